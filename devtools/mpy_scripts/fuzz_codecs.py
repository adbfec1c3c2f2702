# Runs on MicroPython: every input (one hex line each, in the file argv[1]) through the
# firmware's decoders of untrusted bytes. The documented failure is ValueError
# (cose.CoseError is one); anything else, MemoryError included (the heap is capped by
# the caller with -X heapsize), is printed as a FINDING. Prints COUNT lines per decoder
# and MEM lines: free heap before and after (a leak would show), the most heap one
# decode allocated (collected before each input, so that is what the decode itself took).
import binascii
import gc
import sys
import time

from replenish import cbor, coap, cose, protocol
from replenish.hmac_sha256 import HmacSha256

MAC = HmacSha256(bytes(range(32)))
TAG = bytes(32)


def fw_coap(data):
    coap.decode(data)


def fw_cbor(data):
    cbor.decode(data)


def fw_cose(data):
    cose.parse(data)
    cose.verify_answer(MAC, data, TAG)


def fw_answer(data):
    protocol.decode_answer(data)


DECODERS = (("fw_coap", fw_coap), ("fw_cbor", fw_cbor), ("fw_cose", fw_cose),
            ("fw_answer", fw_answer))
counts = {}
for name, _ in DECODERS:
    counts[name] = 0
gc.collect()
free_start = gc.mem_free()
most_alloc = 0
slowest_us = 0
with open(sys.argv[1]) as f:
    for line in f:
        data = binascii.unhexlify(line.strip())
        for name, decode in DECODERS:
            gc.collect()
            before = gc.mem_free()
            started = time.ticks_us()
            try:
                decode(data)
            except ValueError:
                pass
            except Exception as err:
                print("FINDING", name, type(err).__name__, err, line.strip())
            slowest_us = max(slowest_us, time.ticks_diff(time.ticks_us(), started))
            most_alloc = max(most_alloc, before - gc.mem_free())
            counts[name] += 1
gc.collect()
for name, _ in DECODERS:
    print("COUNT", name, counts[name])
print("MEM free_start", free_start)
print("MEM most_alloc", most_alloc)
print("MEM free_end", gc.mem_free())
print("MEM slowest_us", slowest_us)
