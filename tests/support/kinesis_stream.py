"""Kinesis test helper (boto3 against the emulator at $CDCD_TEST_KINESIS_ENDPOINT).

usage: kinesis_stream.py create STREAM SHARDS   create the stream and wait until it is ACTIVE
       kinesis_stream.py read STREAM            print every record, shard by shard in sequence
                                                order, as JSON lines {"shard", "key", "data"}
       kinesis_stream.py delete STREAM          delete the stream (the emulator limits shards)
       kinesis_stream.py put STREAM KEY FILE    put each line of FILE as one record, in order,
                                                with partition key KEY; prints {"sequence"} lines
       kinesis_stream.py split STREAM SHARD     split SHARD in two at the middle of its hash range
"""
import json
import os
import sys
import time

import boto3

client = boto3.client(
    "kinesis",
    endpoint_url=os.environ["CDCD_TEST_KINESIS_ENDPOINT"],
    region_name=os.environ.get("AWS_REGION", "us-east-1"),
)


def create(stream, shards):
    client.create_stream(StreamName=stream, ShardCount=int(shards))
    for _ in range(300):
        status = client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        if status["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.1)
    sys.exit(f"stream {stream} did not become ACTIVE")


def read(stream):
    shards = client.list_shards(StreamName=stream)["Shards"]
    for shard in shards:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = client.get_records(ShardIterator=iterator, Limit=10000)
            for record in page["Records"]:
                print(json.dumps({
                    "shard": shard["ShardId"],
                    "key": record["PartitionKey"],
                    "data": record["Data"].decode(),
                }))
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")


def delete(stream):
    client.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)


def put(stream, key, path):
    with open(path, "rb") as lines:
        for line in lines:
            line = line.rstrip(b"\n")
            if not line:
                continue
            sequence = client.put_record(StreamName=stream, PartitionKey=key, Data=line)["SequenceNumber"]
            print(json.dumps({"sequence": sequence}))


def split(stream, shard_id):
    shard = next(s for s in client.list_shards(StreamName=stream)["Shards"] if s["ShardId"] == shard_id)
    start = int(shard["HashKeyRange"]["StartingHashKey"])
    end = int(shard["HashKeyRange"]["EndingHashKey"])
    client.split_shard(StreamName=stream, ShardToSplit=shard_id, NewStartingHashKey=str((start + end) // 2))
    for _ in range(300):
        status = client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        if status["StreamStatus"] == "ACTIVE":
            break
        time.sleep(0.1)
    children = [s["ShardId"] for s in client.list_shards(StreamName=stream)["Shards"] if s.get("ParentShardId") == shard_id]
    print(json.dumps({"split": shard_id, "children": children}))


if __name__ == "__main__":
    commands = {"create": create, "read": read, "delete": delete, "put": put, "split": split}
    commands[sys.argv[1]](*sys.argv[2:])
