#!/usr/bin/python3
"""Writes tests/fixtures/safetensors/mixed.safetensors the way Hugging Face's
safetensors writer lays a file out (safetensors/src/tensor.rs, `prepare`),
for tests/test_safetensors.c to read:

  - tensors sorted by dtype, descending in the order of HF's Dtype enum
    (F64 > F32 > BF16 > F16 > ...), then by name;
  - data_offsets consecutive from 0 in that order;
  - the header is serde_json's compact form of {"__metadata__": {...},
    name: {"dtype", "shape", "data_offsets"}, ...} in that order, padded with
    spaces to a multiple of 8 bytes.
  (HF keeps __metadata__ in a Rust HashMap, so its key order varies from
  run to run; we write the keys sorted, which is one of those orders.)

Before writing, the script checks its writer reproduces, byte for byte, the
serialisations asserted by HF's own tests (test_serialization, test_empty).
With torch installed it also checks the F16/BF16 bit patterns against
torch's conversions. Standard library only otherwise; never run by make test.

    /usr/bin/python3 tests/reference/make_safetensors_fixture.py \
        tests/fixtures/safetensors/mixed.safetensors
"""
import json
import struct
import sys

# HF's Dtype enum, in declaration ("increasing alignment") order.
DTYPE_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16",
               "I32", "U32", "F32", "F64", "I64", "U64"]


def f32_bytes(values):
    return struct.pack("<%df" % len(values), *values)


def f16_bytes(values):
    return struct.pack("<%de" % len(values), *values)


def bf16_bits(x):
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    assert bits & 0xFFFF == 0, "%r is not exactly representable in bfloat16" % x
    return bits >> 16


def bf16_bytes(values):
    return struct.pack("<%dH" % len(values), *(bf16_bits(x) for x in values))


def serialize(tensors, metadata=None):
    """tensors: {name: (dtype, shape, raw bytes)} -> the file's bytes."""
    order = sorted(tensors, key=lambda name: (-DTYPE_ORDER.index(tensors[name][0]),
                                              name.encode()))
    header = {}
    if metadata is not None:
        header["__metadata__"] = dict(sorted(metadata.items()))
    offset, data = 0, b""
    for name in order:
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        data += raw
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def check_against_hf_tests():
    # tensor.rs test_serialization: {"attn.0": F32 [1, 2, 3] = 0..5}
    got = serialize({"attn.0": ("F32", [1, 2, 3], f32_bytes([0, 1, 2, 3, 4, 5]))})
    want = (bytes([64, 0, 0, 0, 0, 0, 0, 0]) +
            b'{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}' +
            f32_bytes([0, 1, 2, 3, 4, 5]))
    assert got == want, got
    # tensor.rs test_serialization_forced_alignement: 7 spaces of padding
    got = serialize({"attn0": ("F32", [1, 1, 2, 3], f32_bytes([0, 1, 2, 3, 4, 5]))})
    want = (bytes([72, 0, 0, 0, 0, 0, 0, 0]) +
            b'{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}' + b" " * 7 +
            f32_bytes([0, 1, 2, 3, 4, 5]))
    assert got == want, got
    # tensor.rs test_empty, with and without metadata
    assert serialize({}) == bytes([8, 0, 0, 0, 0, 0, 0, 0]) + b"{}" + b" " * 6
    assert serialize({}, {"framework": "pt"}) == (
        bytes([40, 0, 0, 0, 0, 0, 0, 0]) + b'{"__metadata__":{"framework":"pt"}}' + b" " * 5)


INF = float("inf")
F16_VALUES = [1.0, -2.0, 65504.0, 2.0 ** -24, 0.5, -0.0, INF, 2.0 ** -14]
BF16_VALUES = [1.0, -1.5, 2.0 ** 100, 2.0 ** -133]


def check_against_torch():
    try:
        import torch
    except ImportError:
        print("torch not installed: skipping the torch cross-check")
        return
    f16 = torch.tensor(F16_VALUES, dtype=torch.float16).view(torch.int16).tolist()
    assert [x & 0xFFFF for x in f16] == list(struct.unpack("<8H", f16_bytes(F16_VALUES)))
    bf16 = torch.tensor(BF16_VALUES, dtype=torch.bfloat16).view(torch.int16).tolist()
    assert [x & 0xFFFF for x in bf16] == [bf16_bits(x) for x in BF16_VALUES]


def main():
    check_against_hf_tests()
    check_against_torch()
    tensors = {
        "wte.weight": ("F32", [3, 4], f32_bytes([0.25 * i - 1.0 for i in range(12)])),
        "scale": ("F32", [], f32_bytes([42.0])),
        "h.0.attn.c_attn.weight": ("F16", [2, 4], f16_bytes(F16_VALUES)),
        "h.0.ln_1.weight": ("BF16", [4], bf16_bytes(BF16_VALUES)),
        "h.0.ln_1.bias": ("BF16", [4], bf16_bytes([0.0, -0.0, 0.125, -3.0])),
        "empty": ("F16", [0, 3], b""),
    }
    out = serialize(tensors, {"format": "pt", "note": "written by make_safetensors_fixture.py"})
    with open(sys.argv[1], "wb") as f:
        f.write(out)
    print("%s: %d bytes" % (sys.argv[1], len(out)))


if __name__ == "__main__":
    main()
