#!/usr/bin/env python3
"""Derive a binlog whose spatial columns read as LONGBLOB, for the fixture oracle.

    scripts/geometry-as-blob.py IN.binlog OUT.binlog

mysqlbinlog 9.7 cannot print GEOMETRY columns: it stops printing a rows event at the first
one, so those rows cannot be checked against it. A GEOMETRY value is stored in a row exactly
like a LONGBLOB (4-byte length, then SRID and WKB) and its column metadata is the same one
byte, and MySQL counts both as character columns in the charset metadata, so turning the
column type 255 into 252 in the TABLE_MAP events leaves a binlog that mysqlbinlog prints in
full, with the same bytes as the values.

OUT keeps the events before the first GTID event (FORMAT_DESCRIPTION, PREVIOUS_GTIDS), the
transactions (a GTID event up to the next one) that map a table with a spatial column, and a
final ROTATE; every other transaction is left out to keep the file small. Event positions and
CRC32 checksums are rewritten. Events inside a TRANSACTION_PAYLOAD are not looked at: a
compressed transaction is kept only if one of its outer events maps a spatial table (it has
none), so spatial rows inside compressed transactions are not covered.

Used by scripts/make-fixtures.sh. Exits with status 3 if IN has no spatial column.
"""

import struct
import sys
import zlib

MAGIC = b"\xfebin"
HEADER = 19
FORMAT_DESCRIPTION, ROTATE, TABLE_MAP = 15, 4, 19
GTID_EVENTS = {33, 34, 42}  # GTID, ANONYMOUS_GTID, GTID_TAGGED
GEOMETRY, LONGBLOB = 0xFF, 0xFC


def packed_int(data, i):
    """MySQL's length-encoded integer at data[i]: (value, next index)."""
    first = data[i]
    if first < 0xFB:
        return first, i + 1
    size = {0xFC: 2, 0xFD: 3, 0xFE: 8}[first]
    return int.from_bytes(data[i + 1:i + 1 + size], "little"), i + 1 + size


def read_events(data):
    """The events of a binlog: (type, raw bytes)."""
    if data[:4] != MAGIC:
        sys.exit("not a binlog (no magic bytes)")
    i = 4
    while i < len(data):
        if len(data) - i < HEADER:
            sys.exit(f"truncated event header at {i}")
        size = struct.unpack_from("<I", data, i + 9)[0]
        if size < HEADER or i + size > len(data):
            sys.exit(f"bad event size {size} at {i}")
        yield data[i + 4], bytearray(data[i:i + size])
        i += size


def table_map_to_blob(event, post_header, checksum):
    """Turns the GEOMETRY column types of a TABLE_MAP event into LONGBLOB; returns how many."""
    i = HEADER + post_header
    for _ in range(2):  # schema and table: length byte, name, NUL
        i += 1 + event[i] + 1
    columns, i = packed_int(event, i)
    end = len(event) - (4 if checksum else 0)
    if i + columns > end:
        sys.exit("TABLE_MAP column types run past the event")
    changed = 0
    for k in range(i, i + columns):
        if event[k] == GEOMETRY:
            event[k] = LONGBLOB
            changed += 1
    return changed


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2])
    with open(sys.argv[1], "rb") as f:
        data = f.read()
    events = list(read_events(data))
    if not events or events[0][0] != FORMAT_DESCRIPTION:
        sys.exit("the binlog does not start with a FORMAT_DESCRIPTION event")
    fde = events[0][1]
    # FORMAT_DESCRIPTION: binlog version (2), server version (50), timestamp (4), header length
    # (1), post-header lengths (one per event type), checksum algorithm (1), CRC32 (4).
    lengths = fde[HEADER + 57:-5]
    post_header = lengths[TABLE_MAP - 1]
    checksum = fde[-5] == 1

    head, groups, rotate = [], [], None
    for kind, event in events:
        if kind in GTID_EVENTS:
            groups.append([])
        if kind == ROTATE and event is events[-1][1]:
            rotate = event
        elif groups:
            groups[-1].append((kind, event))
        else:
            head.append(event)

    kept, converted = [], 0
    for group in groups:
        changed = sum(
            table_map_to_blob(event, post_header, checksum)
            for kind, event in group
            if kind == TABLE_MAP
        )
        if changed:
            converted += changed
            kept.extend(event for _, event in group)
    if not converted:
        sys.exit(3)

    out = bytearray(MAGIC)
    for event in head + kept + ([rotate] if rotate is not None else []):
        struct.pack_into("<I", event, 13, len(out) + len(event))
        if checksum:
            struct.pack_into("<I", event, len(event) - 4, zlib.crc32(event[:-4]))
        out += event
    with open(sys.argv[2], "wb") as f:
        f.write(out)
    print(f"{sys.argv[2]}: {converted} spatial column type(s) in {len(kept)} events "
          f"({len(out)} bytes)")


if __name__ == "__main__":
    main()
