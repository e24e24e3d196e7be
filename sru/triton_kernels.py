"""Fused Triton kernels for the SRU recurrence (forward and backward).

One launch per pass covers every (batch, direction, unit-block): grid = (cdiv(d, BLOCK), B*D),
so both directions of a bidirectional layer run in the same launch. Each program walks its
direction's time order over BLOCK contiguous units (coalesced loads of each k-slot row).
Inputs may be fp32, fp16 or bf16; the state c, the gates and all accumulation are fp32.
The bias gradient is written as per-sequence partial sums (B, D, 2, d) in fp32 and reduced
over B by the caller with torch.sum: no atomics, so results do not depend on scheduling.

Latency: each step's loads do not depend on the previous step's stores, so the time loops are
software-pipelined (`tl.range(..., num_stages=NUM_STAGES)`: cp.async loads NUM_STAGES - 1 steps
ahead; `python -m sru.compile_check` shows them in the compiled code). The backward pass loads c0
once and carries c_t from the step before (c_{t-1} loaded at step t is c at the next step), 7 loads
per step instead of 8. BLOCK shrinks (256 -> 32) while the grid would leave most SMs idle (PTB
evaluation at batch 1, small models); the arithmetic is the same whatever BLOCK is.

Layout as in ``sru.reference``. Under TRITON_INTERPRET=1 these kernels run on CPU tensors,
which is how the tests hold them to the reference without a GPU.
"""
import torch
import triton
import triton.language as tl

from .reference import dims


@triton.jit
def _tanh(z):
    return 2.0 * tl.sigmoid(2.0 * z) - 1.0


@triton.jit
def _program_columns(BIAS, WC, d, D: tl.constexpr, HAS_WC: tl.constexpr, BLOCK: tl.constexpr):
    """This program's (batch, direction) column, its BLOCK units j (mask m: j < d) and their fp32
    forget/reset biases and weight_c (zeros without it; shared by both passes)."""
    pid_bd = tl.program_id(1)
    b, dr = pid_bd // D, pid_bd % D
    j = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = j < d
    bf = tl.load(BIAS + (dr * 2) * d + j, mask=m).to(tl.float32)
    br = tl.load(BIAS + (dr * 2 + 1) * d + j, mask=m).to(tl.float32)
    if HAS_WC:
        vf = tl.load(WC + (dr * 2) * d + j, mask=m).to(tl.float32)
        vr = tl.load(WC + (dr * 2 + 1) * d + j, mask=m).to(tl.float32)
    else:
        vf = tl.zeros([BLOCK], tl.float32)
        vr = tl.zeros([BLOCK], tl.float32)
    return pid_bd, b, dr, j, m, bf, br, vf, vr


@triton.jit
def _drop_mask(DROP, pid_bd, j, m, d, HAS_DROP: tl.constexpr, BLOCK: tl.constexpr):
    """This column's dropout mask in fp32 (ones without dropout): loaded once, used every step."""
    if HAS_DROP:
        dm = tl.load(DROP + pid_bd * d + j, mask=m).to(tl.float32)
    else:
        dm = tl.full([BLOCK], 1.0, tl.float32)
    return dm


@triton.jit
def _load_step(U, XH, row, j, m, d, bf, br, K: tl.constexpr, SKIP: tl.constexpr):
    """One step's u0, the gates' pre-activations without the weight_c term, and the highway input x'
    (0 without a skip term), for units j, in fp32 (shared by both passes)."""
    u = U + row * K * d + j
    u0 = tl.load(u, mask=m).to(tl.float32)
    zf = tl.load(u + d, mask=m).to(tl.float32) + bf
    zr = tl.load(u + 2 * d, mask=m).to(tl.float32) + br
    if K == 4:
        x = tl.load(u + 3 * d, mask=m).to(tl.float32)
    elif SKIP:
        x = tl.load(XH + row * d + j, mask=m).to(tl.float32)
    else:
        x = tl.zeros_like(u0)
    return u0, zf, zr, x


@triton.jit
def _gates(zf, zr, vf, vr, c_prev, HAS_WC: tl.constexpr):
    """f, r: the 2018 cell's gates read c_{t-1} through weight_c; the 2017 cell's do not."""
    if HAS_WC:
        zf = zf + vf * c_prev
        zr = zr + vr * c_prev
    return tl.sigmoid(zf), tl.sigmoid(zr)


@triton.jit
def _forward_kernel(U, XH, WC, BIAS, C0, MASK, DROP, H, C_ALL, L, B, d,
                    K: tl.constexpr, D: tl.constexpr, HAS_WC: tl.constexpr, SKIP: tl.constexpr,
                    HAS_MASK: tl.constexpr, HAS_DROP: tl.constexpr, DROP_GATE: tl.constexpr,
                    USE_TANH: tl.constexpr, BLOCK: tl.constexpr, NUM_STAGES: tl.constexpr):
    pid_bd, b, dr, j, m, bf, br, vf, vr = _program_columns(BIAS, WC, d, D, HAS_WC, BLOCK)
    dm = _drop_mask(DROP, pid_bd, j, m, d, HAS_DROP, BLOCK)
    c = tl.load(C0 + pid_bd * d + j, mask=m).to(tl.float32)
    for i in tl.range(0, L, num_stages=NUM_STAGES):
        t = i + dr * (L - 1 - 2 * i)  # forward order for dr == 0, reverse for dr == 1
        row = ((t * B + b) * D + dr).to(tl.int64)  # index into (L, B, D)
        u0, zf, zr, x = _load_step(U, XH, row, j, m, d, bf, br, K, SKIP)
        f, r = _gates(zf, zr, vf, vr, c, HAS_WC)
        c_new = f * c + (1.0 - f) * u0
        if USE_TANH:
            g = _tanh(c_new)
        else:
            g = c_new
        if DROP_GATE:
            h = r * (g * dm) + (1.0 - r * dm) * x
        else:
            h = r * (g * dm) + (1.0 - r) * x
        if HAS_MASK:
            pad = tl.load(MASK + t * B + b) != 0
            c_new = tl.where(pad, c, c_new)
            h = tl.where(pad, 0.0, h)
        c = c_new
        tl.store(H + row * d + j, h.to(H.dtype.element_ty), mask=m)
        tl.store(C_ALL + row * d + j, c, mask=m)


@triton.jit
def _backward_kernel(U, XH, WC, BIAS, C0, MASK, DROP, C_ALL, GRAD_H, GRAD_CN,
                     GRAD_U, GRAD_XH, GRAD_WC, GRAD_BIAS, GRAD_C0, L, B, d,
                     K: tl.constexpr, D: tl.constexpr, HAS_WC: tl.constexpr, SKIP: tl.constexpr,
                     HAS_MASK: tl.constexpr, HAS_DROP: tl.constexpr, DROP_GATE: tl.constexpr,
                     USE_TANH: tl.constexpr, BLOCK: tl.constexpr, NUM_STAGES: tl.constexpr):
    pid_bd, b, dr, j, m, bf, br, vf, vr = _program_columns(BIAS, WC, d, D, HAS_WC, BLOCK)
    dm = _drop_mask(DROP, pid_bd, j, m, d, HAS_DROP, BLOCK)
    if DROP_GATE:
        q = dm  # the mask on the gate's highway side
    else:
        q = tl.full([BLOCK], 1.0, tl.float32)
    dc = tl.load(GRAD_CN + pid_bd * d + j, mask=m).to(tl.float32)  # reaches c_t from later
    c0 = tl.load(C0 + pid_bd * d + j, mask=m).to(tl.float32)
    gbf = tl.zeros([BLOCK], dtype=tl.float32)
    gbr = tl.zeros([BLOCK], dtype=tl.float32)
    gvf = tl.zeros([BLOCK], dtype=tl.float32)
    gvr = tl.zeros([BLOCK], dtype=tl.float32)
    t_last = (L - 1) * (1 - dr)  # the backward pass starts at each direction's last step
    c = tl.load(C_ALL + ((t_last * B + b) * D + dr).to(tl.int64) * d + j, mask=m & (j < L * d))  # nothing when L == 0
    for i in tl.range(0, L, num_stages=NUM_STAGES):
        t = (L - 1 - i) + dr * (2 * i + 1 - L)  # reverse of the forward order
        row = ((t * B + b) * D + dr).to(tl.int64)
        gu = GRAD_U + row * K * d + j
        # the previous step's state: c0 at each direction's first step
        first = ((dr == 0) & (t == 0)) | ((dr == 1) & (t == L - 1))
        t_prev = tl.minimum(tl.maximum(t - 1 + 2 * dr, 0), L - 1)  # clamped; unused when first
        prev_row = ((t_prev * B + b) * D + dr).to(tl.int64)
        c_prev = tl.where(first, c0, tl.load(C_ALL + prev_row * d + j, mask=m))
        u0, zf, zr, x = _load_step(U, XH, row, j, m, d, bf, br, K, SKIP)
        f, r = _gates(zf, zr, vf, vr, c_prev, HAS_WC)
        gh = tl.load(GRAD_H + row * d + j, mask=m).to(tl.float32)
        if USE_TANH:
            g = _tanh(c)
            dct = dc + gh * r * dm * (1.0 - g * g)
        else:
            g = c
            dct = dc + gh * r * dm
        g_f = dct * (c_prev - u0) * f * (1.0 - f)
        if DROP_GATE:
            g_r = gh * (g * dm - dm * x) * r * (1.0 - r)
            g_x = gh * (1.0 - r * dm)
        else:
            g_r = gh * (g * dm - x) * r * (1.0 - r)
            g_x = gh * (1.0 - r)
        g_u0 = dct * (1.0 - f)
        if HAS_WC:
            dc_prev = dct * f + g_f * vf + g_r * vr
        else:
            dc_prev = dct * f
        if HAS_MASK:  # padded step: nothing but dc passes through
            pad = tl.load(MASK + t * B + b) != 0
            g_f = tl.where(pad, 0.0, g_f)
            g_r = tl.where(pad, 0.0, g_r)
            g_u0 = tl.where(pad, 0.0, g_u0)
            g_x = tl.where(pad, 0.0, g_x)
            dc_prev = tl.where(pad, dc, dc_prev)
        ty = GRAD_U.dtype.element_ty
        tl.store(gu, g_u0.to(ty), mask=m)
        tl.store(gu + d, g_f.to(ty), mask=m)
        tl.store(gu + 2 * d, g_r.to(ty), mask=m)
        if K == 4:
            tl.store(gu + 3 * d, g_x.to(ty), mask=m)
        elif SKIP:
            tl.store(GRAD_XH + row * d + j, g_x.to(GRAD_XH.dtype.element_ty), mask=m)
        gbf += g_f
        gbr += g_r
        if HAS_WC:
            gvf += g_f * c_prev
            gvr += g_r * c_prev
        dc = dc_prev
        c = c_prev  # c_{t-1} is the next step's c_t
    tl.store(GRAD_C0 + pid_bd * d + j, dc, mask=m)
    tl.store(GRAD_BIAS + (pid_bd * 2) * d + j, gbf, mask=m)
    tl.store(GRAD_BIAS + (pid_bd * 2 + 1) * d + j, gbr, mask=m)
    if HAS_WC:
        tl.store(GRAD_WC + (pid_bd * 2) * d + j, gvf, mask=m)
        tl.store(GRAD_WC + (pid_bd * 2 + 1) * d + j, gvr, mask=m)


NUM_STAGES = 3  # steps of loads in flight in the time loops (2 ahead of the one computed)


def launch_config(d, columns, device, element_size=4):
    """(BLOCK, num_warps) for `columns` = B x directions sequences of d units: BLOCK up to 256 units,
    halved (down to 32) while the grid has fewer than two programs per SM, so that small B x d still
    spreads over the GPU. Each thread loads at least 4 bytes per row (one fp32, two bf16/fp16 units):
    the smallest copy cp.async makes, without which a 16-bit load is not pipelined; at most 4 warps."""
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 132
    block = max(16, min(256, triton.next_power_of_2(d)))
    while block > 32 and triton.cdiv(d, block) * columns < 2 * sms:
        block //= 2
    return block, num_warps(block, element_size)


def num_warps(block, element_size):
    """Warps for BLOCK units of `element_size`-byte activations: at least 4 bytes per thread per row."""
    units_per_thread = max(1, 4 // element_size)
    return max(1, min(4, block // (32 * units_per_thread)))


def _flags(inp, opt):
    """The kernels' compile-time flags for a problem."""
    return dict(HAS_WC=inp.weight_c is not None, SKIP=inp.x is not None, HAS_MASK=inp.mask_pad is not None,
                HAS_DROP=inp.drop is not None, DROP_GATE=opt.drop_gate, USE_TANH=opt.use_tanh,
                NUM_STAGES=NUM_STAGES)


def _pointers(inp):
    """The kernels' leading pointer arguments for inp (U itself stands in for an absent input)."""
    return tuple(inp.U if t is None else t for t in inp)


def forward(inp, opt):
    """Returns h (L, B, D*d) in U's dtype and c_all (L, B, D*d) in fp32."""
    U, d = inp.U, opt.hidden_size
    L, B, D, K = dims(inp, opt)
    h = torch.empty(L, B, D * d, device=U.device, dtype=U.dtype)
    c_all = torch.empty(L, B, D * d, device=U.device, dtype=torch.float32)
    block, warps = launch_config(d, B * D, U.device, U.element_size())
    _forward_kernel[(triton.cdiv(d, block), B * D)](
        *_pointers(inp), h, c_all, L, B, d, K=K, D=D, BLOCK=block, num_warps=warps, **_flags(inp, opt))
    return h, c_all


def backward(inp, opt, c_all, grad_h, grad_cn):
    """Returns grad_U, grad_x (None without x), grad_wc (None without weight_c) and grad_bias partials
    (B, D*2*d) fp32, grad_c0 fp32."""
    U, d = inp.U, opt.hidden_size
    L, B, D, K = dims(inp, opt)
    grad_U = torch.empty_like(U)
    grad_x = None if inp.x is None else torch.empty_like(inp.x)
    grad_wc = None if inp.weight_c is None else torch.empty(B, D * 2 * d, device=U.device, dtype=torch.float32)
    grad_bias = torch.empty(B, D * 2 * d, device=U.device, dtype=torch.float32)
    grad_c0 = torch.empty(B, D * d, device=U.device, dtype=torch.float32)
    block, warps = launch_config(d, B * D, U.device, U.element_size())
    _backward_kernel[(triton.cdiv(d, block), B * D)](
        *_pointers(inp), c_all, grad_h, grad_cn, grad_U, grad_U if grad_x is None else grad_x,
        grad_bias if grad_wc is None else grad_wc, grad_bias,
        grad_c0, L, B, d, K=K, D=D, BLOCK=block, num_warps=warps, **_flags(inp, opt))
    return grad_U, grad_x, grad_wc, grad_bias, grad_c0
