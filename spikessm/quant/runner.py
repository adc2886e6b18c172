"""Reference runner of a spikessm.quant export, numpy only (no torch, no spikessm): copied into every export as
run.py.

    python run.py INPUTS.npy OUTPUT.npy

INPUTS.npy: int64 integer codes, (batch, length) token ids or (batch, length, d_input) quantised features.
OUTPUT.npy: the integer logits (batch, classes), int64. It reads graph.json and model.safetensors beside it; a
bad file exits with one line naming the file and field. docs/deploy.md gives every equation.
"""
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SATURATED = [0]


class ExportError(Exception):
    pass


def fail(message):
    raise ExportError(message)


def read_safetensors(path):
    name = os.path.basename(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        fail(f"{name}: cannot read ({e.strerror})")
    if len(data) < 8:
        fail(f"{name}: truncated (no header length)")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        fail(f"{name}: truncated (header of {n} bytes, file of {len(data)})")
    try:
        header = json.loads(data[8:8 + n])
    except ValueError:
        fail(f"{name}: header is not valid JSON")
    body, tensors = data[8 + n:], {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if not isinstance(info, dict) or info.get("dtype") != "I64":
            got = info.get("dtype") if isinstance(info, dict) else info
            fail(f"{name}: tensor {key}: dtype must be I64, got {got}")
        try:
            start, stop = (int(v) for v in info["data_offsets"])
            shape = [int(v) for v in info["shape"]]
        except (KeyError, TypeError, ValueError):
            fail(f"{name}: tensor {key}: bad shape or data_offsets")
        if stop > len(body) or stop - start != 8 * int(np.prod(shape, dtype=np.int64)):
            fail(f"{name}: tensor {key}: data truncated or of the wrong size")
        tensors[key] = np.frombuffer(body[start:stop], dtype="<i8").reshape(shape).astype(np.int64)
    return tensors


def field(obj, path, key):
    if not isinstance(obj, dict) or key not in obj:
        fail(f"graph.json: missing field {path}.{key}")
    return obj[key]


def shift_round(n, k):
    """n / 2^k rounded half up (the one rounding rule); k an int or an int64 array."""
    k = np.asarray(k, dtype=np.int64)
    right = np.maximum(k, 0)
    half = np.where(right > 0, np.left_shift(np.int64(1), np.maximum(right - 1, 0)), 0)
    return np.left_shift(np.right_shift(n + half, right), np.maximum(-k, 0))


def div_round(n, d):
    return np.floor_divide(2 * n + d, 2 * d)


def sqrt_round(n):
    """sqrt(n) rounded half up, n >= 1 below 2^52: the float root corrected to floor(sqrt(n)), then + 1 where
    n > s^2 + s."""
    s = np.floor(np.sqrt(n.astype(np.float64))).astype(np.int64)
    s = s - (s * s > n)
    s = s + ((s + 1) * (s + 1) <= n)
    return s + (n > s * s + s)


def sat(x, bits):
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    SATURATED[0] += int(np.count_nonzero((x < low) | (x > high)))
    return np.clip(x, low, high)


class Model:
    def __init__(self, folder):
        try:
            with open(os.path.join(folder, "graph.json")) as f:
                self.graph = json.load(f)
        except OSError as e:
            fail(f"graph.json: cannot read ({e.strerror})")
        except ValueError:
            fail("graph.json: not valid JSON")
        if field(self.graph, "graph", "format") != "spikessm-quant-graph":
            fail("graph.json: field format must be 'spikessm-quant-graph'")
        self.tensors = read_safetensors(os.path.join(folder, "model.safetensors"))
        self.c = field(self.graph, "graph", "config")

    def t(self, layer, key):
        name = f"{field(layer, 'layer', 'name')}/{key}"
        if name not in self.tensors:
            fail(f"model.safetensors: missing tensor {name}")
        return self.tensors[name]

    def fracs(self, layer, point):
        value = field(field(layer, layer.get("name", "layer"), "fracs"), layer["name"] + ".fracs", point)
        if not isinstance(value, int):
            fail(f"graph.json: field {layer['name']}.fracs.{point} must be an integer")
        return value

    def requant(self, acc, layer, bits):
        return sat(shift_round(acc * self.t(layer, "m"), self.t(layer, "k")), bits)

    def linear(self, x, layer):
        acc = x @ self.t(layer, "W").T
        name = f"{layer['name']}/b"
        if name in self.tensors:
            acc = acc + self.tensors[name]
        return sat(acc, self.c["acc_bits"])

    def norm(self, x, layer):
        kind = field(layer, layer["name"], "kind")
        if kind == "layer":
            acc = self.layer_norm(x, layer, "", self.integer(layer, "norm_extra_bits"),
                                  self.integer(layer, "norm_frac"))
        elif kind == "batch":
            acc = sat(x * self.t(layer, "G") + self.t(layer, "b"), self.c["acc_bits"])
        else:
            fail(f"graph.json: field {layer['name']}.kind must be batch or layer, got {kind!r}")
        return self.requant(acc, layer, self.c["act_bits"]), self.fracs(layer, "out")

    def ssm(self, u, layer):
        """S4D (H independent SSMs: state (H, M), B u and C x per channel), S5 (one SSM of M modes: state (M,),
        B (M, H) and C (H, M) matrix products) or RF neurons (Model.rf); a graph without the field type is an S4D
        one."""
        c, t = self.c, lambda key: self.t(layer, key)
        kind = layer.get("type", "s4d")
        if kind == "s4d":
            mix_in, mix_out = (lambda b, x: b * x[..., None]), (lambda m, x: (m * x).sum(-1))
        elif kind == "s5":
            mix_in, mix_out = (lambda b, x: x @ b.T), (lambda m, x: x @ m.T)
        elif kind == "rf":
            return self.rf(u, layer)
        else:
            fail(f"graph.json: field {layer['name']}.type must be s4d, s5 or rf, got {kind!r}")
        Ar, Ai, Br, Bi, Cr, Ci = (t(k) for k in ("Ar", "Ai", "Br", "Bi", "Cr", "Ci"))
        B, L, H = u.shape
        xr = np.zeros((B,) + Ar.shape, np.int64)
        xi = np.zeros_like(xr)
        v = np.zeros((B, H), np.int64)
        reset = field(layer, layer["name"], "readout")
        theta = t("theta") if reset != "identity" else None
        neurons = layer.get("neurons", "lif")  # graphs without the field have LIF neurons
        if neurons not in ("lif", "rf"):
            fail(f"graph.json: field {layer['name']}.neurons must be lif or rf, got {neurons!r}")
        vi = np.zeros((B, H), np.int64)
        fire_on_tie = field(layer, layer["name"], "fire_on_tie")
        if not isinstance(fire_on_tie, bool):
            fail(f"graph.json: field {layer['name']}.fire_on_tie must be true or false")
        outs = []
        for step in range(L):
            ut = u[:, step]
            bu_r, bu_i = shift_round(mix_in(Br, ut), t("kB")), shift_round(mix_in(Bi, ut), t("kB"))
            xr, xi = (sat(shift_round(Ar * xr - Ai * xi, t("fA")) + bu_r, c["state_bits"]),
                      sat(shift_round(Ar * xi + Ai * xr, t("fA")) + bu_i, c["state_bits"]))
            skip = shift_round(t("D") * ut * t("mD"), t("kD"))
            y = sat(shift_round(mix_out(Cr, xr) - mix_out(Ci, xi), t("kC")) + skip, c["membrane_bits"])
            if reset == "identity":  # no readout: y itself, in the membrane format
                outs.append(y)
                continue
            if reset == "heaviside":
                outs.append((y > theta).astype(np.int64))
                continue
            if neurons == "rf":  # the complex membrane: v = (lam v) >> fL + y on re
                v, vi = (sat(shift_round(t("Lr") * v - t("Li") * vi, t("fL")) + y, c["membrane_bits"]),
                         sat(shift_round(t("Lr") * vi + t("Li") * v, t("fL")), c["membrane_bits"]))
            else:
                v = sat(shift_round(t("beta") * v, c["coef_bits"] - 1) + y, c["membrane_bits"])
            s = ((v >= theta) if fire_on_tie else (v > theta)).astype(np.int64)
            if reset == "subtract":
                v = sat(v - s * theta, c["membrane_bits"])
            elif reset == "zero":
                v, vi = v * (1 - s), vi * (1 - s)
            elif reset != "none":
                fail(f"graph.json: field {layer['name']}.readout must be subtract, zero, none, heaviside or "
                     "identity")
            outs.append(s)
        return np.stack(outs, 1), (self.fracs(layer, "membrane") if reset == "identity" else 0)

    def rf(self, u, layer):
        """RF neurons, K branches (one complex mode each) per channel whose state is the membrane:
        z = (lam z) >> fA + (u >> kU) on the real part; the soma Re z (K = 1) or (sum_k W_k Re z_k) >> fW; the
        threshold theta, or theta + (S a) >> fS with the spike trace a = (d a) >> (coef_bits - 1) + s 2^f_state
        (adaptive); s = [soma > threshold]; reset subtract, zero or none. All in the state's format."""
        c, t, name = self.c, lambda key: self.t(layer, key), layer["name"]
        bits = c["state_bits"]
        Ar, Ai, fA, kU, theta = (t(k) for k in ("Ar", "Ai", "fA", "kU", "theta_state"))
        reset = field(layer, name, "readout")
        if reset not in ("subtract", "zero", "none"):
            fail(f"graph.json: field {name}.readout of an rf layer must be subtract, zero or none, got {reset!r}")
        branches, adaptive = self.integer(layer, "branches"), field(layer, name, "adaptive")
        if not isinstance(adaptive, bool):
            fail(f"graph.json: field {name}.adaptive must be true or false")
        fs = self.fracs(layer, "state")
        zr = np.zeros((u.shape[0], u.shape[2], branches), np.int64)
        zi = np.zeros_like(zr)
        a = np.zeros(zr.shape[:2], np.int64)
        outs = []
        for step in range(u.shape[1]):
            zr, zi = (sat(shift_round(Ar * zr - Ai * zi, fA) + shift_round(u[:, step], kU)[..., None], bits),
                      sat(shift_round(Ar * zi + Ai * zr, fA), bits))
            m = zr[..., 0] if branches == 1 else sat(shift_round((t("soma_weight") * zr).sum(-1), t("fW")), bits)
            th = sat(theta + shift_round(t("adapt_scale") * a, t("fS")), bits) if adaptive else theta
            s = (m > th).astype(np.int64)
            if adaptive:
                a = sat(shift_round(t("adapt_decay") * a, c["coef_bits"] - 1) + shift_round(s, -fs), bits)
            if reset == "subtract":
                zr = sat(zr - s[..., None] * np.asarray(th)[..., None], bits)
            elif reset == "zero":
                zr, zi = zr * (1 - s[..., None]), zi * (1 - s[..., None])
            outs.append(s)
        return np.stack(outs, 1), 0

    def lookup(self, b, frac_b, table):
        """table[b] for a sigmoid-like table: index = clip(b >> (frac_b - lut_step_bits)), format act_bits - 1."""
        half = self.c["lut_range"] << self.c["lut_step_bits"]
        return table[np.clip(shift_round(b, frac_b - self.c["lut_step_bits"]), -half, half) + half]

    def integer(self, layer, key):
        value = field(layer, layer["name"], key)
        if not isinstance(value, int) or isinstance(value, bool):
            fail(f"graph.json: field {layer['name']}.{key} must be an integer")
        return value

    def layer_norm(self, x, layer, prefix, extra, fn):
        """LayerNorm over the channels of each token: the affine's accumulator (docs/deploy.md)."""
        c, t = self.c, lambda key: self.t(layer, prefix + key)
        H = x.shape[-1]
        centred = shift_round(x, -extra) - div_round(shift_round(x.sum(-1, keepdims=True), -extra), H)
        var = div_round((centred * centred).sum(-1, keepdims=True), H)
        sd = sqrt_round(np.maximum(var + t("eps"), 1))
        n = sat(div_round(shift_round(centred, -fn), sd), c["act_bits"])
        return sat(n * t("G") + t("b"), c["acc_bits"])

    def gsu(self, x, f, layer):
        c, t = self.c, lambda key: self.t(layer, key)
        act = c["act_bits"]
        delta = shift_round(np.abs(x).max(-1, keepdims=True) * t("q"), c["coef_bits"] - 1)
        ternary = (x > delta).astype(np.int64) - (x < -delta).astype(np.int64)
        f_a, f_g, f_p, f_n, f_out = (self.fracs(layer, point) for point in ("a", "g", "prod", "norm", "out"))
        a = self.requant(self.linear(ternary, layer), layer, act)
        g = sat(shift_round(sat(x @ t("TW"), c["acc_bits"]), f - f_g), act)
        prod = sat(shift_round(a * g, f_a + f_g - f_p), act)
        acc = self.layer_norm(prod, layer, "norm_", self.integer(layer, "norm_extra_bits"),
                              self.integer(layer, "norm_frac"))
        z = sat(shift_round(acc * t("norm_m"), t("norm_k")), act)
        gelu = z * self.lookup(z, f_n, t("table"))
        return sat(shift_round(gelu, f_n + act - 1 - f_out), act), f_out

    def glu(self, x, f, layer):
        c = self.c
        ab = self.requant(self.linear(x, layer), layer, c["act_bits"])
        a, g = np.split(ab, 2, axis=-1)
        f_ab = self.fracs(layer, "ab")
        gated = a * self.lookup(g, f_ab, self.t(layer, "table"))
        f_out = self.fracs(layer, "out")
        return sat(shift_round(gated, f_ab + c["act_bits"] - 1 - f_out), c["act_bits"]), f_out

    def add(self, x, fx, z, fz, layer):
        f = self.fracs(layer, "sum")
        return sat(shift_round(x, fx - f) + shift_round(z, fz - f), self.c["act_bits"]), f

    def run(self, codes):
        g, c = self.graph, self.c
        enc = field(g, "graph", "encoder")
        if field(g, "graph", "tokens"):
            if codes.ndim != 2:
                fail(f"INPUTS: token ids must be (batch, length), got shape {codes.shape}")
            acc = self.t(enc, "E")[codes]
        else:
            if codes.ndim != 3:
                fail(f"INPUTS: features must be (batch, length, d_input), got shape {codes.shape}")
            acc = self.linear(codes, enc)
        x, f = self.requant(acc, enc, c["act_bits"]), self.fracs(enc, "out")
        for i, block in enumerate(field(g, "graph", "blocks")):
            path = f"blocks[{i}]"
            z, fz = x, f
            if field(block, path, "prenorm"):
                z, fz = self.norm(z, field(block, path, "norm"))
            z, fz = self.ssm(z, field(block, path, "ssm"))
            mixing = field(block, path, "mixing")
            kind = field(mixing, f"blocks.{i}.mixing", "kind")
            if kind not in ("glu", "gsu"):
                fail(f"graph.json: field blocks.{i}.mixing.kind must be glu or gsu, got {kind!r}")
            z, fz = (self.glu if kind == "glu" else self.gsu)(z, fz, mixing)
            x, f = self.add(x, f, z, fz, field(block, path, "add"))
            if not block["prenorm"]:
                x, f = self.norm(x, block["norm"])
        if g.get("final_norm") is not None:
            x, f = self.norm(x, g["final_norm"])
        if field(g, "graph", "pooling") == "last":
            pooled = x[:, -1]
        else:
            pooled = div_round(sat(x.sum(1), c["acc_bits"]), x.shape[1])
        head = field(g, "graph", "head")
        return self.requant(self.linear(pooled, head), head, c["act_bits"])


def main(argv):
    if len(argv) != 3:
        print("usage: python run.py INPUTS.npy OUTPUT.npy", file=sys.stderr)
        return 2
    try:
        try:
            codes = np.load(argv[1], allow_pickle=False)
        except (OSError, ValueError) as e:
            fail(f"{os.path.basename(argv[1])}: cannot read as .npy ({e})")
        if codes.dtype != np.int64:
            fail(f"{os.path.basename(argv[1])}: integer codes must be int64, got {codes.dtype}")
        logits = Model(HERE).run(codes)
    except ExportError as e:
        print(f"run.py: {e}", file=sys.stderr)
        return 1
    np.save(argv[2], logits)
    if SATURATED[0]:
        print(f"run.py: {SATURATED[0]} values saturated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
