"""Kinesis test helper (boto3 against the emulator at $CDCD_TEST_KINESIS_ENDPOINT).

usage: kinesis_stream.py create STREAM SHARDS   create the stream and wait until it is ACTIVE
       kinesis_stream.py read STREAM            print every record, shard by shard in sequence
                                                order, as JSON lines {"shard", "key", "data"}
       kinesis_stream.py delete STREAM          delete the stream (the emulator limits shards)
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


if __name__ == "__main__":
    {"create": create, "read": read, "delete": delete}[sys.argv[1]](*sys.argv[2:])
