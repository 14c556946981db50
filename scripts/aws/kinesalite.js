// kinesalite bound to 127.0.0.1 only (its cli.js listens on every interface), in memory.
// usage: node kinesalite.js KINESALITE_MODULE_DIR PORT   (run by scripts/aws.sh start)
'use strict'
const [dir, port] = process.argv.slice(2)
const kinesalite = require(dir)
const server = kinesalite({ createStreamMs: 50, deleteStreamMs: 50, updateStreamMs: 50, shardLimit: 1000 })
server.listen(Number(port), '127.0.0.1', () => {
  const a = server.address()
  console.log('kinesalite listening at http://%s:%s', a.address, a.port)
})
