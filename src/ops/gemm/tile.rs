//! Workgroup tiles of the GEMM core (gemm.wgsl's `WG_M`, `WG_N`, `BK`, `TM`, `STAGES`
//! overrides): the candidates the tuner chooses from and the rule by output shape.

/// A workgroup tile: `wg_m` x `wg_n` invocations (at most 256, WebGPU's default limit) of
/// `tm` x `tm` outputs each (4: gemm.wgsl `main`, 8: `main_8x8`), the K step
/// and the copies of the tile in workgroup memory. Workgroup memory:
/// 4·bk·(wg_m + wg_n)·tm·stages bytes, checked against the adapter's limit (`fits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tile {
    pub wg_m: u32,
    pub wg_n: u32,
    pub bk: u32,
    #[serde(default = "four")]
    pub tm: u32,
    /// Copies of the tile in workgroup memory: 2 overlaps staging the next K step with
    /// computing this one (4x4 only).
    #[serde(default = "one")]
    pub stages: u32,
}

fn four() -> u32 {
    4
}

fn one() -> u32 {
    1
}

impl Tile {
    pub const SQUARE: Tile = Tile { wg_m: 16, wg_n: 16, bk: 16, tm: 4, stages: 1 };
    pub const WIDE: Tile = Tile { wg_m: 4, wg_n: 64, bk: 8, tm: 4, stages: 1 };
    pub const MEDIUM: Tile = Tile { wg_m: 8, wg_n: 32, bk: 16, tm: 4, stages: 1 };
    pub const TALL: Tile = Tile { wg_m: 64, wg_n: 4, bk: 8, tm: 4, stages: 1 };
    /// 16x32 outputs from 32 invocations: weight gradients of small layers, whose whole
    /// output fits one tile and whose work is all in K (split-K spreads it).
    pub const SMALL: Tile = Tile { wg_m: 4, wg_n: 8, bk: 32, tm: 4, stages: 1 };
    /// SQUARE with twice the K step: half the barriers, 16 KiB of workgroup memory.
    pub const SQUARE_DEEP: Tile = Tile { wg_m: 16, wg_n: 16, bk: 32, tm: 4, stages: 1 };
    /// 32x32 outputs from 64 invocations.
    pub const QUARTER: Tile = Tile { wg_m: 8, wg_n: 8, bk: 32, tm: 4, stages: 1 };
    /// 16x64 outputs from 64 invocations: 16-channel layers over a moderate N.
    pub const NARROW: Tile = Tile { wg_m: 4, wg_n: 16, bk: 32, tm: 4, stages: 1 };
    /// 128x128 outputs from 256 invocations of 8x8: the large-GPU tile.
    pub const BIG: Tile = Tile { wg_m: 16, wg_n: 16, bk: 8, tm: 8, stages: 1 };
    /// BIG with twice the K step (16 KiB of workgroup memory).
    pub const BIG_DEEP: Tile = Tile { wg_m: 16, wg_n: 16, bk: 16, tm: 8, stages: 1 };
    /// 64x64 outputs from 64 invocations of 8x8.
    pub const SQUARE_8X8: Tile = Tile { wg_m: 8, wg_n: 8, bk: 16, tm: 8, stages: 1 };
    /// Double-buffered 4x4 tiles: one barrier per K step instead of two.
    pub const SQUARE_DB: Tile = Tile { wg_m: 16, wg_n: 16, bk: 16, tm: 4, stages: 2 };
    pub const QUARTER_DB: Tile = Tile { wg_m: 8, wg_n: 8, bk: 32, tm: 4, stages: 2 };
    pub const NARROW_DB: Tile = Tile { wg_m: 4, wg_n: 16, bk: 16, tm: 4, stages: 2 };
    pub const SMALL_DB: Tile = Tile { wg_m: 4, wg_n: 8, bk: 32, tm: 4, stages: 2 };
    /// Every tile the tuner may choose (`tune.rs`).
    pub const ALL: [Tile; 15] = [
        Tile::SQUARE,
        Tile::SQUARE_DEEP,
        Tile::WIDE,
        Tile::MEDIUM,
        Tile::TALL,
        Tile::SMALL,
        Tile::QUARTER,
        Tile::NARROW,
        Tile::BIG,
        Tile::BIG_DEEP,
        Tile::SQUARE_8X8,
        Tile::SQUARE_DB,
        Tile::QUARTER_DB,
        Tile::NARROW_DB,
        Tile::SMALL_DB,
    ];
    /// The largest K step of any tile: split-K slices are multiples of it, so the
    /// partition of K, and with it every rounding, is the same whatever the tile.
    pub const MAX_BK: usize = 32;

    /// The tile that wastes least on an M x N output: a narrow M (a conv with 16 or 32
    /// output channels) gets a wide tile, a narrow N a tall one.
    pub fn for_shape(m: usize, n: usize) -> Tile {
        if m <= 16 && n <= 32 {
            Tile::SMALL
        } else if m <= 16 && n >= 256 {
            Tile::WIDE
        } else if m <= 32 && n >= 128 {
            Tile::MEDIUM
        } else if n <= 16 && m >= 256 {
            Tile::TALL
        } else {
            Tile::SQUARE
        }
    }
    /// Whether the adapter can run this tile (invocations and workgroup memory).
    pub fn fits(&self, a: &crate::gpu::AdapterSummary) -> bool {
        self.wg_m * self.wg_n <= a.max_workgroup_invocations
            && 4 * self.bk * (self.wg_m + self.wg_n) * self.tm * self.stages <= a.max_workgroup_storage
            && self.bk <= Tile::MAX_BK as u32
            && self.bk > 0
            && matches!((self.tm, self.stages), (4, 1) | (4, 2) | (8, 1))
    }
    pub fn rows(&self) -> usize {
        (self.tm * self.wg_m) as usize
    }
    pub fn cols(&self) -> usize {
        (self.tm * self.wg_n) as usize
    }
    /// The gemm.wgsl entry point that computes this tile.
    pub fn entry(&self) -> &'static str {
        if self.tm == 8 {
            "main_8x8"
        } else {
            "main"
        }
    }
}
