"""Wait until the AWS stand-ins answer real signed API calls, then create the test bucket.

usage: ready.py TIMEOUT_S BUCKET AK SK DENIED_AK DENIED_SK NAME=KIND=URL...
  KIND is s3 or kinesis. Once every endpoint answers (ListBuckets / ListStreams), creates BUCKET on
  the first s3 endpoint (idempotent) and checks that the DENIED key pair gets AccessDenied on it.
  Prints one line: NAME ready-after-seconds ... ; exits 1 with the last error if TIMEOUT_S passes.
Run by scripts/aws.sh start with the venv's python (boto3)."""
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

tmo, bucket, ak, sk, dak, dsk = float(sys.argv[1]), *sys.argv[2:7]
targets = [a.split("=", 2) for a in sys.argv[7:]]
cfg = Config(retries={"max_attempts": 0}, connect_timeout=1, read_timeout=5,
             s3={"addressing_style": "path"})
t0 = time.time()


def client(kind, url, key=ak, secret=sk):
    return boto3.client(kind, endpoint_url=url, region_name="us-east-1", config=cfg,
                        aws_access_key_id=key, aws_secret_access_key=secret)


done = []
for name, kind, url in targets:
    c = client(kind, url)
    while True:
        try:
            c.list_buckets() if kind == "s3" else c.list_streams()
            done.append(f"{name} {time.time() - t0:.1f}s")
            break
        except Exception as e:  # connection refused, 5xx while starting, ...
            if time.time() - t0 > tmo:
                sys.exit(f"{name} ({kind} at {url}) not ready after {tmo:.0f} s: {e}")
            time.sleep(0.1)

s3_url = next(url for _, kind, url in targets if kind == "s3")
s3 = client("s3", s3_url)
try:
    s3.create_bucket(Bucket=bucket)
except ClientError as e:
    if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
        raise
s3.head_bucket(Bucket=bucket)
if dak:
    try:
        client("s3", s3_url, dak, dsk).put_object(Bucket=bucket, Key="cdcd-denied-probe", Body=b"x")
        sys.exit(f"the denied key pair {dak} could write to s3://{bucket}: identities not applied")
    except ClientError as e:
        if e.response["Error"]["Code"] != "AccessDenied":
            raise
print(f"ready: {', '.join(done)}; bucket {bucket} ok" + (f", key {dak} denied" if dak else ""))
