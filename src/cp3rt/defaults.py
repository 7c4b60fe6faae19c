"""Every default value in one place, each with the spec section it comes from.

Frozen configs elsewhere take their defaults from here, so that the CLI, the library and the
docs agree. Section numbers refer to ``docs/reference-behaviour.md``.
"""

from __future__ import annotations

# Which nets, on what (PipelineConfig, `cp3rt run`)
SEGMENT_MODEL = "cyto3"    # the Cellpose 3 generalist segmentation model (§2.1)
BACKEND = "auto"           # engines.select: TensorRT, ONNX Runtime CUDA, ONNX Runtime CPU, first that works
PRECISION = "fp32"

# Network / tiling (§3.5)
TILE_SIZE = 224            # bsize: the largest tile side the nets see (--tile-size)
MAX_TILE_SIZE = 1024       # the largest tile side an ONNX export declares (its H/W axes are dynamic)
TILE_MULTIPLE = 16         # padded sizes are multiples of 16 (get_pad_yx div)
MIN_TILE = 32              # smallest padded tile side (1 px image -> 32)
TILE_OVERLAP = 0.1         # fraction; usable range below
TILE_OVERLAP_RANGE = (0.05, 0.5)
TAPER_SIGMA = 7.5          # _taper_mask sig
BATCH_SIZE = 8

# Normalisation (§3.3)
PERCENTILES = (1.0, 99.0)
MIN_PERCENTILE_RANGE = 1e-3  # x99 - x01 must exceed this, else the channel becomes 0

# Diameters (§1.5, §2.2, §2.3)
DIAM_MEAN_CYTO = 30.0
DIAM_MEAN_NUCLEI = 17.0
NUCLEUS_CHANNEL_RESCALE = 30.0 / 17.0  # restoration: channel 1 runs at rescale * 30/17 (§3.11)

# Dynamics (§3.7, §4)
NITER_AT_RESCALE_1 = 200
FLOW_THRESHOLD = 0.4
CELLPROB_THRESHOLD = 0.0
MIN_SIZE = 15
MAX_SIZE_FRACTION = 0.4
FLOW_SCALE = 5.0           # nets are trained on 5 x unit flows; dynamics integrate dP / 5
HIST_PAD = 20              # rpad in get_masks
SEED_MIN_COUNT = 10        # a seed needs more than this many end points
SEED_WINDOW = 5            # local-max window
EXPAND_MIN_COUNT = 2       # expansion keeps histogram bins with more than this
EXPAND_ITERATIONS = 5
EXPAND_RADIUS = 5          # 11 x 11 window around a seed
FLOW_NORM_EPS = 1e-60      # masks_to_flows normalises by eps + |(dy, dx)| (§4.1)
INTERP = True              # bilinear Euler steps (§4.3)

# Degradations (§6.2) are kept with the degradation code: they are presets, not defaults.

# Metrics (§5)
AP_THRESHOLDS = (0.5, 0.75, 0.9)  # average_precision IoU thresholds
MASK_IOU_THRESHOLD = 0.5          # mask_ious / AJI assignment threshold

# Caches and environment variables
ENV_CACHE_DIR = "CP3RT_CACHE_DIR"
ENV_CELLPOSE_MODELS = "CELLPOSE_LOCAL_MODELS_PATH"
ZOO_URL = "https://www.cellpose.org/models/{basename}"
ENV_ZOO_URL = "CP3RT_ZOO_URL"  # override (tests point it at a loopback server; mirrors)

# Model zoo downloads (§2.1, §2.4). A CPnet file holds ~6.6 M float32 parameters (~26 MB,
# §1.3); anything far smaller is an error page or a truncated transfer.
MIN_WEIGHT_FILE_BYTES = 20_000_000
MIN_SIZE_MODEL_BYTES = 1_000   # size_*.npy: two 256-vectors + two floats, pickled
DOWNLOAD_TIMEOUT_S = 60.0      # per socket operation, not for the whole transfer
DOWNLOAD_CHUNK_BYTES = 1 << 20

# Engines (§1.2): every CPnet input side must be a multiple of 8 (three 2x poolings).
NET_HW_MULTIPLE = 8

# Training (§7.2 restoration, §7.3 augmentation, §7.4 segmentation, §6.3 degradation canvas)
TRAIN_NBASE = (32, 64, 128, 256)   # CPnet widths after the input channels (§1.3)
TRAIN_SEG_EPOCHS = 100
TRAIN_SEG_LR = 0.005               # AdamW (train_seg default)
TRAIN_RESTORE_EPOCHS = 100
TRAIN_RESTORE_LR = 0.001           # denoise.py CLI default
TRAIN_WEIGHT_DECAY = 1e-5
TRAIN_SCALE_RANGE = 0.5            # objects end at diam_mean x U(0.75, 1.25)
TRAIN_MIN_MASKS = 5                # images with fewer masks are dropped
TRAIN_MIN_DIAMETER = 5.0           # per-image diameters are clamped to at least this (§1.5)
TRAIN_RESTORE_CANVAS = 340         # degradations are drawn on a 340 x 340 canvas (§6.3)
TRAIN_LAM_PER = 1.0                # loss weights [per, seg, rec] (§7.1)
TRAIN_LAM_SEG = 1.5
TRAIN_LAM_REC = 0.0

# ONNX export (§1.8): opset 17 is what TensorRT 8.6+/10 and onnxruntime >= 1.13 all read.
ONNX_OPSET = 17
ONNX_OPSET_RANGE = (13, 20)  # 13: Unsqueeze/Resize input forms used; 20: TorchScript exporter max
EXPORT_PRECISION = "fp32"
# int8 export (`cp3rt export --precision int8 --calibrate DIR`): the bar the int8 pipeline's
# masks must reach against the fp32 pipeline's (issue 19), the calibration method and the
# activation type measured best on the starter nets (benchmarks/results/int8.md).
INT8_MIN_AP50 = 0.98
INT8_MIN_AP75 = 0.95
INT8_METHOD = "percentile"
INT8_ACTIVATIONS = "u8"
# What a restoration net keeps in fp32 by default: the Gemm/Add/Mul nodes (style layers, residual
# adds, per-channel scales) of its last decoder level and output head (cp3rt's export names them
# /net/up.0/..., /net/out_pre/...). All-int8, the starter denoiser moved restore -> segment masks
# to AP@0.5 0.90 on held-out GOWT1 images; with these 15 nodes fp32, 0.99 (a segmentation net
# keeps none). benchmarks/results/int8.md.
INT8_KEEP_FP32 = {"restore": ("Gemm", "Add", "Mul"), "segment": ()}
INT8_KEEP_SCOPE = {"restore": ("/net/up.0/", "/net/out_pre/"), "segment": ()}

# Input conversion (§3.2)
CHANNEL_GUESS_MAX = 10     # without channel_axis, a smallest axis below this is the channel axis
Z_GUESS_MIN = 5            # with channels given, a smallest axis above this is taken as Z
MAX_RGB_CHANNEL = 3        # Cellpose channel numbers: 0 = gray/none, 1..3 = R, G, B

# Percentile subsampling (§3.3 step 4): above 224**3 values per channel, stride dim // 224
# (dim // 50 along the plane axis of a stack).
PERCENTILE_SUBSAMPLE_SIZE = 224 ** 3
PERCENTILE_SUBSAMPLE_YX = 224
PERCENTILE_SUBSAMPLE_Z = 50

# Tiling (§3.5, Appendix A)
PAD_EXTRA = 8              # get_pad_yx: at least 8 px of zeros on every side
TAPER_MIN_SIZE = 224       # the taper mask is built on max(224, ly, lx), whatever bsize is
TAPER_EDGE = 20            # the taper's half-height point lies 20 px inside the tile edge
STYLE_DIM = 256            # style vector length of every CPnet

# onnxruntime CPU session settings (chosen by benchmarks/bench_tiles_cpu.py, see
# benchmarks/results/tiles_cpu.md).
ORT_THREADS: int | None = None   # None: one intra-op thread per physical core
ORT_GRAPH_OPT = "all"
ORT_EXECUTION_MODE = "sequential"
ORT_MEM_ARENA = True
# Memory patterns pre-plan buffers per input shape; tiles come in several batch/tile shapes, so
# the plans pile up: off, peak RSS of 1024^2 restore+segment drops from ~1.9 to ~1.3 GB at the same
# speed (benchmarks/results/end_to_end.md, "mem-pattern on" row).
ORT_MEM_PATTERN = False
ORT_SPIN = False  # speed within noise either way; idle spinning would steal CPU from the dynamics

# TensorRT plans (§1.8: tiles are multiples of 16 from 32 to 224, possibly rectangular; 224 x 224
# is the common case and gets an optimisation profile of its own).
TRT_BATCH = (1, 64, 256)       # min:opt:max batch of a built plan (`cp3rt build --batch`)
TRT_OPT_LEVEL = 3              # builder optimisation level, TensorRT's own default (0..5)
TRT_OPT_LEVEL_RANGE = (0, 5)
TRT_ENGINE_SLOTS = 2           # double buffering: host work on one batch while the GPU runs the other

# torch-CUDA engines: every call is padded to one batch, so each tile shape has one cuDNN algorithm
# choice and one CUDA graph and a tile's output never depends on its batch companions.
GPU_BATCH = 64                 # best tiles/s of the H200 runs for every variant (results/gpu_net.md)
# TorchInductor-compiled forward: 2.8x the net's GPU throughput on the H200, but 12-20 s of compile
# per tile shape on first use (cached on disk afterwards), so it is asked for (`--compile`).
GPU_COMPILE = False

# `cp3rt check` tolerances (§9.14): max |a - b| per output as a fraction of the reference output's
# range, per precision of the engine under test; masks are judged by AP at IoU 0.5.
CHECK_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 3e-2}
CHECK_MIN_AP50 = {"fp32": 0.99, "fp16": 0.95, "bf16": 0.9}

# Throughput at scale (issue 6; cp3rt-only, no reference counterpart)
STREAM_WORKERS = 3         # images in flight at least: one reading, one on the engine, one in dynamics
STREAM_WORKERS_MAX = 8     # ... and at most (each holds an image, its tiles and flows in memory)
STREAM_CORES_PER_WORKER = 2  # many-core hosts: one more image in flight per 2 cores, up to the max
STREAM_GIL_SWITCH_S = None  # GIL switch interval while workers run; None: Python's 5 ms (measured better on 2 cores, stream/switch.py)
STREAM_MAX_BATCH = 32      # tiles per shared engine call (same tile shape only)
BLOCK_SIZE = 2048          # core side of a block of a huge image (pixels)
MIN_BLOCK_SIDE = 64        # smallest Y/X block core: smaller blocks would be mostly halo
BLOCK_HALO_DIAMETERS = 2.0  # halo around a block, in object diameters (>= 2 per issue 6)
BLOCK_MERGE_IOU = 0.5      # two labels across a seam are one object above this IoU (overlap zone)
LABELS_NAME = "cp3rt"      # NGFF labels/<name> group written into OME-Zarr inputs
CLUSTER_RETRIES = 2        # a failed Dask task is retried this many times
HUGE_IMAGE_SIDE = 4096     # `cp3rt run`: a TIFF wider or taller than this goes through blocks (issue 6)
# Huge volumes (issue 7): a do_3D run holds ~60 bytes per voxel at the net's scale (input,
# three views' outputs, flows, dynamics; tracemalloc, rescale 1). At diameter 30 (halo 60) a
# block of a stack up to BLOCK_SIZE_Z planes reads <= 128 x 504 x 504 voxels (~2 GB), a taller
# stack's block 248 x 504 x 504 (~3.8 GB). Z blocks are tall because stacks are short in Z: up
# to 128 planes they are one block tall, with no Z seams and no Z halo overhead.
BLOCK_SIZE_3D = 384        # Y/X core side of a block of a huge volume (pixels)
BLOCK_SIZE_Z = 128         # Z core of a volume block (planes; raised to the Z halo if that is taller)
HUGE_VOLUME_VOXELS = 2**26  # a volume above this many voxels (~4 GB in one piece) or a side > HUGE_IMAGE_SIDE

# `cp3rt watch` (issue 18; cp3rt-only). A file is taken once its size and mtime have not changed
# for WATCH_SETTLE seconds AND it parses as a complete image; a file that stays unparseable while
# unchanged for WATCH_GIVE_UP seconds is processed anyway, so a bad file is reported, not waited
# for forever. Events (inotify & co.) only say when to look; a full rescan every WATCH_RESCAN
# seconds catches events the OS dropped (queue overflow). --poll replaces events on network shares.
WATCH_SETTLE = 0.5          # seconds
WATCH_GIVE_UP = 30.0        # seconds a stable, still-incomplete file is waited for
WATCH_RESCAN = 30.0         # seconds between safety rescans when events are used
WATCH_JOURNAL = "cp3rt_watch.jsonl"  # in the output folder: what each session did, one line per file
