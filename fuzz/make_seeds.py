#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/.

Usage: python3 fuzz/make_seeds.py [--check]
  (from anywhere; needs protoc on PATH for the trajectory_validator and
   weight_chunk seeds)
  --check   only verify that the files in the repo match what this script writes

Seeds are small valid inputs and near-valid variants of them (one field wrong), so
that the fuzzer starts from the parsers' deep paths. Files the fuzzer found and that
were added by hand (crashes fixed since, interesting inputs merged with
deploy/fuzz.sh --merge) live beside these; this script never deletes anything.
"""
import json
import os
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def bytes_to_unicode():
    """GPT-2's byte -> printable character map (model/byte_level.cc)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) +
                 list(range(0xAE, 0x100)))
    out, n = {}, 0
    for b in range(256):
        if b in printable:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


B2U = bytes_to_unicode()
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| "
               r"?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("o", "r"),
          ("Ġ", "Ġ"), ("ĠĠ", "ĠĠ"), ("Ċ", "Ċ"), ("r", "e"), ("Ã", "©")]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def tokenizer_json(**changes):
    vocab = {B2U[b]: b for b in range(256)}
    for left, right in MERGES:
        vocab.setdefault(left + right, len(vocab))
    added = [{"id": len(vocab) + i, "content": s, "single_word": False,
              "lstrip": False, "rstrip": False, "normalized": False, "special": True}
             for i, s in enumerate(SPECIALS)]
    doc = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT},
             "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
             "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False,
                           "trim_offsets": False, "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False,
                    "trim_offsets": False, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "",
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [f"{l} {r}" for l, r in MERGES]},
    }
    for path, value in changes.items():
        node = doc
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[int(k) if isinstance(node, list) else k]
        last = int(keys[-1]) if isinstance(node, list) else keys[-1]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


DELETE = object()
CONFIG = json.dumps({"bos_token": None, "eos_token": "<|im_end|>",
                     "pad_token": {"content": "<|endoftext|>", "special": True},
                     "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"})
TEXT = "<|im_start|>user\nWhat is the café's answer?<|im_end|>\n  print(the)\r\n"


def tokenizer_seeds():
    files = lambda j, c=None, t=None: b"\x00" + "\0".join(
        x for x in [j, c, t] if x is not None).encode()
    text = lambda t: b"\x01" + (t if isinstance(t, bytes) else t.encode())
    return {
        "qwen2_style": files(tokenizer_json(), CONFIG, TEXT),
        "gpt2_style": files(tokenizer_json(**{
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                              "use_regex": True},
            "post_processor": None,
            "model.merges": [[l, r] for l, r in MERGES]}), None, None),
        "ignore_merges": files(tokenizer_json(**{"model.ignore_merges": True}), "{}",
                               "the the  there\n\n"),
        "strip_tokens": files(tokenizer_json(**{
            "added_tokens.0.lstrip": True, "added_tokens.1.rstrip": True,
            "added_tokens.2.special": False}), CONFIG,
            "a  <|endoftext|>  b <|im_start|>\t c<|im_end|><|im_end|>"),
        "normalizer_sequence": files(tokenizer_json(**{
            "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}]}}),
            None, None),
        "missing_byte": files(tokenizer_json(**{"model.vocab": {"a": 0}})),
        "merge_unknown": files(tokenizer_json(**{"model.merges": ["x yz"]})),
        "wordpiece": files(tokenizer_json(**{"model.type": "WordPiece"})),
        "lookahead_split": files(tokenizer_json(**{
            "pre_tokenizer.pretokenizers.0.pattern.Regex": r"\w+(?=\s)|\s+(?!\S)"})),
        "bad_config": files(tokenizer_json(), '{"eos_token": "<|nope|>"}', "x"),
        "truncated": files(tokenizer_json()[:2000]),
        "text_code": text("def f(x):\n    return x  # café\n\tprint('</code>')\r\n"),
        "text_specials": text(TEXT),
        "text_unicode": text("e\u0301 \u212b \uac00\u11a8 привет 世界 😀 \u00a0\u3000x"),
        "text_invalid_utf8": text(b"ok \xff\xfe \xe2\x82 \xc3\xa9\xed\xa0\x80 end"),
        "text_whitespace": text("   \n\n\t\t  x  \r\n   "),
        "text_ids": text(struct.pack("<8i", 0, 255, 256, 266, 267, 268, 269, -1)),
    }


def safetensors_file(header, data=b"", pad=True):
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def safetensors_seeds():
    f32 = struct.pack("<4f", 1.0, -2.0, 0.5, 3.0)
    both = {"__metadata__": {"format": "pt"},
            "a.weight": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},
            "b.bias": {"dtype": "BF16", "shape": [1, 2], "data_offsets": [4, 8]}}
    return {
        "f32": safetensors_file(
            {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, f32),
        "f16_bf16": safetensors_file(both, b"\x00\x3c\x00\xc0\x80\x3f\x00\xc0"),
        "scalar_and_empty": safetensors_file(
            {"s": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]},
             "e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [4, 4]}},
            f32[:4]),
        "unpadded": safetensors_file(
            {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, f32,
            pad=False),
        "truncated_data": safetensors_file(
            {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, f32[:9]),
        "offsets_out_of_bounds": safetensors_file(
            {"w": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, f32),
        "shape_mismatch": safetensors_file(
            {"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}, f32),
        "dtype_i64": safetensors_file(
            {"w": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}}, f32),
        "overlapping": safetensors_file(
            {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
             "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, f32),
        "negative_dim": safetensors_file(
            {"w": {"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]}}, f32),
        "huge_dims": safetensors_file(
            {"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 0],
                   "data_offsets": [0, 0]}}, f32),
        "header_too_long": struct.pack("<Q", 1 << 40) + b"{}",
        "header_not_object": safetensors_file([1, 2, 3]),
        "short": b"\x10\x00\x00",
    }


# The agent's actions (agent/action_parser.h).
ACTION_SEEDS = {
    "simple": "<think>add them</think><code>print(1 + 1)</code>",
    "code_prints_marker": "<think>x</think>\n<code>\nprint('</code>')\ns = \"</code>\"\n"
                          "</code> trailing text",
    "triple_quoted": "<think>doc</think><code>'''a </code> b\n'''\n\"\"\"</code>\"\"\""
                     "\nx = 1</code>",
    "comment_marker": "<think>c</think><code>x = 1  # it's </code> done",
    "escapes": "<think>e</think><code>s = 'a\\'</code>'\nt = \"\\\\\"</code>",
    "no_think": "<code>print(2)</code>",
    "unclosed_code": "<think>t</think><code>print(3)",
    "nested": "<think><think>a</think></think><code><code>1</code></code>",
    "empty_code": "  \n<think>nothing</think>  <code>\n\n   \n</code>",
    "text_between": "<think>a</think> and then <code>x</code>",
    "unterminated_string": "<think>u</think><code>s = 'abc\n</code>",
}

CONFIG_SEEDS = {
    "minimal": "run:\n  dir: runs/fuzz\n  seed: 3\n",
    "with_overrides": "learner:\n  batch_groups: 2\n\0learner.batch_groups=4"
                      "\0metrics.port=0\0log.level=warning",
    "types": "run:\n  id: \"a b\"\nlog:\n  verbosity: 2\nactor:\n  temperature: 0.7\n"
             "  cell_timeout: 1500ms\nprocess:\n  shutdown_grace: 1m30s\n",
    "errors": "learner:\n  batchgroups: 2\nactor: 3\n- a\nlog:\n  level: loud\n",
    "bad_yaml": "run: [unclosed\n  dir: {",
    "anchors": "run: &r\n  seed: 1\nprocess: *r\n",
    "bad_override": "\0no_equals\0unknown.key=1\0log.verbosity=99\0run.seed=x",
    "list_override": "\0launch.roles=[sandbox, actor]",
    "top_level_list": "- 1\n- 2\n",
}

# TrajectoryGroup messages in protobuf text format, encoded with protoc. The first
# passes the fuzzer's tight limits (2 trajectories, ids < 64, <= 8 steps).
TRAJ_STEPS = """
  steps {
    context { begin: 0 end: 4 }
    action { begin: 4 end: 7 }
    observation { begin: 7 end: 9 }
    policy_version: 3
    rewards { name: "format" value: 0.1 }
    well_formed: true executed_ok: true
    generate_time { nanos: 5000000 } execute_time { seconds: 1 }
    reward: 0.1
  }
  steps {
    context { begin: 0 end: 4 } context { begin: 7 end: 9 }
    action { begin: 9 end: 12 }
    policy_version: 4
    reward: 1.0
  }"""
TRAJ = """trajectories {{
  trajectory_id: "{id}"
  token_ids: [1, 2, 3, 4, 10, 11, 12, 20, 21, 13, 14, 15]
  behavior_logprobs: [0, 0, 0, 0, -0.5, -1.25, -0.01, 0, 0, -2, -0.3, -0.7]
  {steps}
  has_final_answer: true final_answer: "42"
  ending_reason: ENDING_REASON_SUBMITTED
  final_rewards {{ name: "em" value: 1 }}
  total_reward: 1.1
  wall_time {{ seconds: 2 }}
}}"""
GROUP = ('group_id: "g-1" actor_id: "node0/actor1" dataset: "tiny" example_id: "7" '
         'task_family: "qa_search" data_cursor: 9\n')


def trajectory_texts():
    two = GROUP + TRAJ.format(id="t0", steps=TRAJ_STEPS) + TRAJ.format(
        id="t1", steps=TRAJ_STEPS)
    one = GROUP + TRAJ.format(id="t0", steps=TRAJ_STEPS)
    return {
        "valid_two": two,
        "valid_one": one,
        "nan_step_reward": two.replace("reward: 1.0", "reward: nan", 1),
        "inf_reward_component": two.replace("value: 0.1", "value: inf", 1),
        "action_out_of_range": two.replace("action { begin: 9 end: 12 }",
                                           "action { begin: 9 end: 13 }", 1),
        "empty_context": two.replace("context { begin: 0 end: 4 }",
                                     "context { begin: 2 end: 2 }", 1),
        "repeated_context": two.replace(
            "context { begin: 0 end: 4 } context { begin: 7 end: 9 }",
            "context { begin: 0 end: 4 } context { begin: 0 end: 4 } "
            "context { begin: 0 end: 4 }", 1),
        "token_outside_vocab": two.replace("[1, 2, 3, 4,", "[1, 2, 3, 400,", 1),
        "positive_logprob": two.replace("-0.5,", "0.5,", 1),
        "no_steps": GROUP + TRAJ.format(id="t0", steps=""),
        "duplicate_ids": GROUP + TRAJ.format(id="t0", steps=TRAJ_STEPS) + TRAJ.format(
            id="t0", steps=TRAJ_STEPS),
        "unspecified_ending": one.replace("ENDING_REASON_SUBMITTED",
                                          "ENDING_REASON_UNSPECIFIED"),
        "negative_duration": one.replace("{ seconds: 2 }", "{ seconds: -2 }"),
        "no_ids": two.replace('group_id: "g-1" actor_id: "node0/actor1"', ""),
    }


def trajectory_seeds():
    out = {}
    for name, text in trajectory_texts().items():
        out[name] = subprocess.run(
            ["protoc", f"--proto_path={ROOT}/proto",
             "--encode=nbrl.v1.TrajectoryGroup", "nbrl/v1/learner.proto"],
            input=text.encode(), check=True, capture_output=True).stdout
    return out


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


# WeightChunk messages, each after one byte that picks how the fuzzer cuts them
# into slices. A 12-byte version of two tensors sent in one chunk or in two.
WEIGHT_BYTES = bytes(range(1, 13))


def weight_texts():
    manifest = ('manifest {{ version: 3 total_bytes: 12 crc32c: {crc} '
                'tensors {{ name: "a" dtype: DTYPE_F32 shape: [2] offset: 0 num_bytes: 8 }} '
                'tensors {{ name: "b" dtype: DTYPE_F16 shape: [2] offset: 8 num_bytes: 4 }} }} '
                ).format(crc=crc32c(WEIGHT_BYTES))
    esc = lambda b: "".join("\\%03o" % x for x in b)
    chunk = lambda data, offset, last, head="": (
        'version: 3 {head}offset: {offset} data: "{data}" crc32c: {crc} last: {last}'
        .format(head=head, offset=offset, data=esc(data), crc=crc32c(data),
                last="true" if last else "false"))
    return {
        "whole": chunk(WEIGHT_BYTES, 0, True, manifest),
        "first_of_two": chunk(WEIGHT_BYTES[:7], 0, False, manifest),
        "second_of_two": chunk(WEIGHT_BYTES[7:], 7, True),
        "bad_crc": chunk(WEIGHT_BYTES, 0, True, manifest).replace(
            "crc32c: %d last" % crc32c(WEIGHT_BYTES), "crc32c: 1 last"),
        "empty_version": 'version: 4 manifest { version: 4 total_bytes: 0 } last: true',
    }


def weight_chunk_seeds():
    out = {}
    for name, text in weight_texts().items():
        msg = subprocess.run(
            ["protoc", f"--proto_path={ROOT}/proto",
             "--encode=nbrl.v1.WeightChunk", "nbrl/v1/learner.proto"],
            input=text.encode(), check=True, capture_output=True).stdout
        for cut in (0, 1, 6):
            out[f"{name}_cut{cut}"] = bytes([cut]) + msg
    # The data field twice (the last counts), and an unknown field.
    out["data_twice"] = bytes([2]) + b"\x22\x02ab\x22\x03cde"
    out["unknown_field"] = bytes([3]) + b"\x08\x01\x78\x05\x22\x01z"
    return out


def all_seeds():
    enc = lambda d: {k: v.encode() for k, v in d.items()}
    return {
        "tokenizer": tokenizer_seeds(),
        "safetensors": safetensors_seeds(),
        "config": dict(enc(CONFIG_SEEDS), **{
            f"configs_{os.path.splitext(n)[0]}": open(
                os.path.join(ROOT, "configs", n), "rb").read()
            for n in sorted(os.listdir(os.path.join(ROOT, "configs")))
            if n.endswith(".yaml")}),
        "action_parser": enc(ACTION_SEEDS),
        "trajectory_validator": trajectory_seeds(),
        "weight_chunk": weight_chunk_seeds(),
    }


def main():
    check = "--check" in sys.argv[1:]
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        print(__doc__)
        return 0
    stale = []
    for target, seeds in all_seeds().items():
        d = os.path.join(CORPUS, target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            path = os.path.join(d, "seed_" + name)
            old = open(path, "rb").read() if os.path.exists(path) else None
            if old == data:
                continue
            if check:
                stale.append(path)
            else:
                with open(path, "wb") as f:
                    f.write(data)
    if stale:
        print("make_seeds: out of date:\n  " + "\n  ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
