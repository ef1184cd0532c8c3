//! GEMM tiles chosen by measurement on the adapter in hand, and remembered.
//!
//! No one tile suits every GPU and shape: a CPU adapter wants few, deep workgroups (its
//! barriers are expensive), a large GPU many, and a narrow layer wastes most of a square
//! tile. With tuning on for a device (`attach`: the CLI's default, `CUTTLE_TUNE=0` skips),
//! the first GEMM of each shape and operand layout runs every candidate tile that fits the
//! adapter on scratch operands of the same sizes, keeps the fastest, and writes the choice
//! to a JSON file per adapter and driver, so later runs plan without measuring. With it
//! off, `Tile::for_shape` picks by shape alone.
//!
//! The tile never changes a result: each output sums its K range in the same order in
//! every tile, and the split-K partition does not depend on the tile. Tuned and untuned
//! runs are bit-identical (tested), so a cache filled by another run cannot change this one.

use super::gemm::{Params, Tile, Views};
use crate::gpu::{AdapterSummary, Dispatch, Gpu, GpuError, Tensor};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The tile cache of each device that has one, by `Gpu::id`. Kept here rather than in
/// `Gpu` so that the device layer knows nothing of GEMM tiles (no import from `gpu` up to
/// `ops`); a device without an entry plans by `Tile::for_shape`.
static CACHES: Mutex<BTreeMap<u64, Arc<TileCache>>> = Mutex::new(BTreeMap::new());

/// Gives `gpu` this tile cache from now on (replacing any it had) and returns it.
pub fn attach(gpu: &Gpu, cache: TileCache) -> Arc<TileCache> {
    let cache = Arc::new(cache);
    CACHES.lock().expect("tile caches lock").insert(gpu.id(), cache.clone());
    cache
}

/// The tile cache of `gpu`, if it has one.
pub fn cache_of(gpu: &Gpu) -> Option<Arc<TileCache>> {
    CACHES.lock().expect("tile caches lock").get(&gpu.id()).cloned()
}

/// Whether the command line tunes: unless `CUTTLE_TUNE=0` (a run pays for measuring once
/// per adapter; the library and its tests do not unless they attach a cache).
pub fn wanted_by_cli() -> bool {
    std::env::var("CUTTLE_TUNE").map_or(true, |v| v != "0")
}

/// The tiles chosen so far on one device, and where they are kept.
#[derive(Default)]
pub struct TileCache {
    enabled: bool,
    /// The JSON file for this adapter and driver; none keeps the choices in memory only.
    path: Option<PathBuf>,
    chosen: Mutex<BTreeMap<String, Tile>>,
    /// One tile for every GEMM, whatever the shape (tests and experiments).
    forced: Mutex<Option<Tile>>,
    /// Shapes measured by this process (the rest came from the file or the rule).
    measured: std::sync::atomic::AtomicUsize,
    /// Told, while shapes are being measured, how many are done and the seconds since
    /// the first began: the first time at once, then every [`PROGRESS_EVERY`] seconds at
    /// most (tuning can take minutes, and a silent start reads as a hang).
    progress: Option<Box<dyn Fn(usize, f64) + Send + Sync>>,
    /// When the first measurement began, and when progress was last told.
    progress_times: Mutex<Option<(std::time::Instant, std::time::Instant)>>,
}

/// Seconds between two progress reports of tile tuning.
const PROGRESS_EVERY: f64 = 10.0;

#[derive(serde::Serialize, serde::Deserialize)]
struct CacheFile {
    adapter: String,
    driver: String,
    tiles: BTreeMap<String, Tile>,
}

/// Where tile choices are kept: `CUTTLE_CACHE_DIR`, else `$XDG_CACHE_HOME/cuttle`, else
/// `~/.cache/cuttle`.
fn cache_dir() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("CUTTLE_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("cuttle")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("cuttle")))
}

/// FNV-1a: a stable name for an adapter and driver in a file name.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

impl TileCache {
    /// Tuning on for `adapter`, with the choices of earlier runs read from its cache file
    /// (an unreadable or foreign file is reported and set aside: it only costs a re-tune).
    pub fn open(adapter: &AdapterSummary) -> TileCache {
        TileCache::open_in(adapter, cache_dir())
    }

    /// As `open`, with the cache file in `dir` (None: in memory only).
    pub fn open_in(adapter: &AdapterSummary, dir: Option<PathBuf>) -> TileCache {
        let ident = format!("{} {} {}", adapter.name, adapter.backend, adapter.driver);
        let path = dir.map(|d| d.join(format!("tiles-{:016x}.json", fnv(&ident))));
        let mut chosen = BTreeMap::new();
        if let Some(p) = &path {
            match std::fs::read_to_string(p) {
                Ok(text) => match serde_json::from_str::<CacheFile>(&text) {
                    Ok(f) if f.adapter == adapter.name && f.driver == adapter.driver => {
                        chosen = f.tiles.into_iter().filter(|(_, t)| t.fits(adapter)).collect();
                    }
                    Ok(_) => log::warn!("{}: tile cache of another adapter; tuning afresh", p.display()),
                    Err(e) => log::warn!("{}: unreadable tile cache ({e}); tuning afresh", p.display()),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("{}: {e}; tuning afresh", p.display()),
            }
        }
        TileCache { enabled: true, path, chosen: Mutex::new(chosen), ..Default::default() }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Uses `tile` for every GEMM planned from now on (None: back to tuning or the shape
    /// rule). The tile must fit the adapter (`Tile::fits`); for tests and experiments.
    pub fn force(&self, tile: Option<Tile>) {
        *self.forced.lock().expect("tile cache lock") = tile;
    }

    /// The cache file, if the choices are kept on disk.
    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    /// How many shapes this process measured (not found in the file).
    pub fn measured(&self) -> usize {
        self.measured.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many shapes have a measured tile.
    pub fn len(&self) -> usize {
        self.chosen.lock().expect("tile cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// This cache, telling `f(shapes measured, seconds)` how tuning goes while it
    /// measures (see `progress`).
    pub fn with_progress(self, f: impl Fn(usize, f64) + Send + Sync + 'static) -> TileCache {
        TileCache { progress: Some(Box::new(f)), ..self }
    }

    /// Tells the progress callback, when one is set and it is time to.
    fn note_progress(&self) {
        let Some(f) = &self.progress else { return };
        let now = std::time::Instant::now();
        let mut times = self.progress_times.lock().expect("tile cache lock");
        let (start, last) = times.get_or_insert((now, now - std::time::Duration::from_secs(3600)));
        if now.duration_since(*last).as_secs_f64() >= PROGRESS_EVERY {
            *last = now;
            f(self.measured(), now.duration_since(*start).as_secs_f64());
        }
    }

    fn save(&self, adapter: &AdapterSummary) {
        let Some(path) = &self.path else { return };
        let file = CacheFile {
            adapter: adapter.name.clone(),
            driver: adapter.driver.clone(),
            tiles: self.chosen.lock().expect("tile cache lock").clone(),
        };
        // Write-then-rename: a run stopped mid-write leaves the old file, not half of one.
        let tmp = path.with_extension(format!("json.{}", std::process::id()));
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|_| std::fs::write(&tmp, serde_json::to_vec_pretty(&file).expect("tiles serialise")))
            .and_then(|_| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            log::warn!("{}: could not save tile choices ({e}); they are kept for this run only", path.display());
        }
    }
}

/// What a tile choice depends on: the operand views and every size in the parameters,
/// for a batched GEMM its products and strides too (not the flags, scale or K slice,
/// which do not change the memory traffic's shape). An unbatched key leaves the batch
/// fields out, so it reads as keys did before batching existed and earlier cache files
/// stay valid.
fn key(views: Views, p: &Params, splits: usize) -> String {
    let modes = views.modes();
    let mut q = *p;
    q.flags = 0;
    q.alpha = 0.0;
    q.k_split = 0;
    let mut words: Vec<u32> = bytemuck::cast_slice(std::slice::from_ref(&q)).to_vec();
    let batched = if views.batched { "b" } else { "" };
    // The trailing words are groups, the three strides, the three first offsets and two
    // pads. Keys keep the form they had before the offsets existed (cache files of earlier
    // runs stay valid): unbatched GEMMs end with one zero where `groups` is; batched ones
    // with the strides and one zero (where the padding was). The first offsets do not
    // change which tile is fastest.
    if views.batched {
        words.truncate(words.len() - 4);
        *words.last_mut().expect("params words") = 0;
    } else {
        words.truncate(words.len() - 8);
        *words.last_mut().expect("params words") = 0;
    }
    let sizes: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    format!("{}{}{}{batched} s{splits} {}", modes.0, modes.1, modes.2, sizes.join(","))
}

/// The tile for one GEMM: forced, cached, measured now (tuning on), or by shape.
/// `build(tile, c)` makes the GEMM's main dispatch with that tile writing to `c`;
/// `a_len`, `b_len`, `c_len` size the scratch operands it is timed on.
pub(super) fn choose(
    gpu: &Gpu,
    views: Views,
    p: &Params,
    splits: usize,
    (a_len, b_len, c_len): (usize, usize, usize),
    build: impl Fn(Tile, [&Tensor; 4]) -> Dispatch,
) -> Result<Tile, GpuError> {
    let (m, n) = (p.m as usize, p.n as usize);
    let rule = Tile::for_shape(m, n);
    let Some(cache) = cache_of(gpu) else { return Ok(rule) };
    if let Some(t) = *cache.forced.lock().expect("tile cache lock") {
        return Ok(t);
    }
    if !cache.enabled || cfg!(target_arch = "wasm32") {
        return Ok(rule);
    }
    let key = key(views, p, splits);
    if let Some(t) = cache.chosen.lock().expect("tile cache lock").get(&key) {
        return Ok(*t);
    }
    // Candidates: the tiles that fit the adapter and pad the output by at most twice
    // what the best-fitting one does (the others cannot win), and the shape rule's.
    let fitting: Vec<Tile> = Tile::ALL.iter().copied().filter(|t| t.fits(gpu.adapter())).collect();
    let padded = |t: &Tile| m.div_ceil(t.rows()) * t.rows() * n.div_ceil(t.cols()) * t.cols();
    let least = fitting.iter().map(padded).min().unwrap_or(0);
    let mut candidates: Vec<Tile> = fitting.into_iter().filter(|t| padded(t) <= 2 * least).collect();
    if !candidates.contains(&rule) {
        candidates.push(rule);
    }
    let best = if candidates.len() == 1 {
        rule
    } else {
        cache.note_progress();
        let a = Tensor::scratch(gpu, "tune.a", &[a_len])?;
        let b = Tensor::scratch(gpu, "tune.b", &[b_len])?;
        let bias = Tensor::scratch(gpu, "tune.bias", &[n])?;
        let c = Tensor::scratch(gpu, "tune.c", &[c_len])?;
        let mut best = (f64::INFINITY, rule);
        for t in candidates {
            let secs = time(gpu, build(t, [&a, &b, &bias, &c]), best.0);
            log::debug!("tile {t:?} for {key}: {:.3} ms", secs * 1e3);
            if secs < best.0 {
                best = (secs, t);
            }
        }
        best.1
    };
    cache.measured.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    cache.chosen.lock().expect("tile cache lock").insert(key, best);
    cache.save(gpu.adapter());
    Ok(best)
}

/// Seconds per run of `d`: the best of two timings of enough back-to-back runs in one
/// submit to last about 5 ms. A candidate whose first run is half again slower than the
/// best so far is not timed further.
fn time(gpu: &Gpu, d: Dispatch, best: f64) -> f64 {
    let d = [d];
    // Planning is synchronous; on native `seconds_per_run` only waits on the queue, so
    // blocking on it is immediate. The browser never tunes (`choose` returns first).
    let time = |runs| block_on_ready(gpu.seconds_per_run(&d, runs));
    let first = time(1);
    if first > 1.5 * best {
        return first;
    }
    let runs = ((0.005 / first.max(1e-7)) as usize).clamp(1, 64);
    time(runs).min(time(runs))
}

/// Runs a future that is ready once polled (`Gpu::seconds_per_run` on native: it waits on
/// the queue synchronously, then its completion callback has fired).
fn block_on_ready<T>(f: impl std::future::Future<Output = T>) -> T {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_unbatched_gemms_are_unchanged_and_batched_ones_distinct() {
        let p = Params { m: 2, n: 3, k: 4, ..Default::default() };
        // The key this GEMM had before batched GEMMs (cache files of earlier runs).
        let old = "000 s1 2,3,4,0,1,0,0,0,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0";
        assert_eq!(key(Views::AB, &p, 1), old);
        let b = Params { groups: 3, a_stride: 8, c_stride: 6, ..p };
        let batched = key(Views::matmul_batched(crate::ops::gemm::Layout::AB), &b, 1);
        assert_eq!(batched, "000b s1 2,3,4,0,1,0,0,0,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,3,8,0,6,0");
        let shared = key(Views::matmul_batched(crate::ops::gemm::Layout::AB), &Params { a_stride: 0, ..b }, 1);
        assert_ne!(batched, shared);
    }
}
