//! The only module that touches wgpu directly: adapter choice, the device and its limits,
//! tensors (storage buffers with a name and a shape), the pipeline cache, recorded
//! dispatches, submission, readback and timing. Everything above it uses these verbs and
//! never names a wgpu type; nothing here imports from the rest of the crate.
//!
//! Acquiring a device (`Gpu::new`) is separate from using it: tests and the browser build
//! create their own `Gpu` and pass it in. Everything that waits on the GPU is `async`
//! (the browser cannot block); native callers wrap it with `pollster::block_on`.

mod buffer;
mod pipeline;

mod profile;

pub use buffer::{read_f32, read_u32, Readback, Tensor};
pub use pipeline::{grid_1d, Dispatch, ShaderId, MAX_GROUPS, SHADERS};

use std::fmt;

/// Why no device could be had. Every message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(
        "no GPU adapter found{0}. Install a GPU driver with Vulkan, Metal or DX12 support; on a \
         headless Linux machine `apt-get install mesa-vulkan-drivers libvulkan1` gives the \
         lavapipe software adapter"
    )]
    NoAdapter(String),
    #[error("no adapter name contains {wanted:?}; adapters present: {present}")]
    NoMatch { wanted: String, present: String },
    #[error("the adapter {adapter:?} refused a device: {why}")]
    Device { adapter: String, why: String },
    #[error(
        "tensor `{tensor}` needs {bytes} bytes but this adapter allows at most {limit} bytes \
         per {what} (adapter {adapter:?})"
    )]
    TooLarge { tensor: String, bytes: u64, limit: u64, what: &'static str, adapter: String },
    #[error("GPU readback failed: {0}")]
    Readback(String),
}

/// How to choose the adapter. `name` is matched as a case-insensitive substring; the
/// `CUTTLE_ADAPTER` environment variable fills it when unset. `WGPU_BACKEND` (read by wgpu)
/// restricts the backends searched. (Whether GEMM tiles are tuned is `ops::tune`'s
/// business, not the device's.)
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    pub name: Option<String>,
}

impl GpuOptions {
    pub fn from_env() -> Self {
        GpuOptions { name: std::env::var("CUTTLE_ADAPTER").ok().filter(|s| !s.is_empty()) }
    }
}

/// What a user needs to know about an adapter, in one printable line (plus limits).
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub max_storage_binding: u64,
    pub max_buffer: u64,
    pub max_workgroup_invocations: u32,
    pub max_workgroup_storage: u32,
    pub subgroups: bool,
    pub timestamps: bool,
    /// Every optional feature, for `cuttle info`.
    pub features: String,
}

impl AdapterSummary {
    fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let limits = adapter.limits();
        AdapterSummary {
            name: info.name,
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
            max_storage_binding: limits.max_storage_buffer_binding_size,
            max_buffer: limits.max_buffer_size,
            max_workgroup_invocations: limits.max_compute_invocations_per_workgroup,
            max_workgroup_storage: limits.max_compute_workgroup_storage_size,
            subgroups: adapter.features().contains(wgpu::Features::SUBGROUP),
            timestamps: adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY),
            features: format!("{:?}", adapter.features()),
        }
    }

    /// True for software rasterisers (lavapipe, SwiftShader, WARP): they are slow, and
    /// workgroup barriers cost more there, so callers size work and pick kernels by it.
    pub fn is_cpu(&self) -> bool {
        self.device_type == "Cpu"
    }
}

impl fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, {}, driver {}; storage binding {} MiB, buffer {} MiB, {} invocations/workgroup, {} KiB workgroup memory)",
            self.name,
            self.backend,
            self.device_type,
            if self.driver.is_empty() { "?" } else { &self.driver },
            self.max_storage_binding >> 20,
            self.max_buffer >> 20,
            self.max_workgroup_invocations,
            self.max_workgroup_storage >> 10
        )
    }
}

/// A device ready to run cuttle's kernels, with the pipeline cache bound to it.
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter: AdapterSummary,
    limits: wgpu::Limits,
    pipelines: pipeline::PipelineCache,
    /// Bytes of tensors created on this device so far (the memory plan's size; buffers
    /// are never freed during training, so this is also its peak).
    allocated: std::sync::atomic::AtomicU64,
    /// Distinguishes devices in one process (keys for caches kept above this module).
    id: u64,
}

/// A handle on the device outside any borrow of its `Gpu` (the browser's test destroys the
/// device mid-epoch through it).
#[derive(Clone)]
pub struct DeviceHandle(wgpu::Device);

impl DeviceHandle {
    /// Destroys the device, as a driver reset would.
    pub fn destroy(&self) {
        self.0.destroy();
    }
}

/// The backends searched: `WGPU_BACKEND` if set, else Vulkan, Metal, DX12 and browser
/// WebGPU. The GL backend is left out by default: its compute support is patchy, and
/// probing EGL prints noise on headless machines.
fn backends() -> wgpu::Backends {
    wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY)
}

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends();
    wgpu::Instance::new(desc)
}

/// Every adapter wgpu can see (honouring `WGPU_BACKEND`), for `cuttle info`.
#[cfg(not(target_arch = "wasm32"))]
pub async fn list_adapters() -> Vec<AdapterSummary> {
    let adapters = instance().enumerate_adapters(backends()).await;
    adapters.iter().map(AdapterSummary::of).collect()
}

#[cfg(not(target_arch = "wasm32"))]
fn type_rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

impl Gpu {
    /// Picks an adapter (by name if asked, else discrete > integrated > virtual > CPU) and
    /// opens a device with the adapter's real limits.
    pub async fn new(opts: &GpuOptions) -> Result<Gpu, GpuError> {
        let instance = instance();
        let adapter = Self::pick(&instance, opts).await?;
        Self::with_adapter(adapter).await
    }

    async fn pick(instance: &wgpu::Instance, opts: &GpuOptions) -> Result<wgpu::Adapter, GpuError> {
        let name = opts.name.clone().or_else(|| GpuOptions::from_env().name);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let mut adapters = instance.enumerate_adapters(backends()).await;
            // wgpu's GL backend cannot run compute shaders on most drivers we meet; keep it
            // only as a last resort.
            adapters.sort_by_key(|a| {
                let i = a.get_info();
                (type_rank(i.device_type), i.backend == wgpu::Backend::Gl)
            });
            if adapters.is_empty() {
                let wanted = name.map(|n| format!(" (wanted one named like {n:?})")).unwrap_or_default();
                return Err(GpuError::NoAdapter(wanted));
            }
            match name {
                None => Ok(adapters.remove(0)),
                Some(want) => {
                    let lw = want.to_lowercase();
                    let pos = adapters.iter().position(|a| a.get_info().name.to_lowercase().contains(&lw));
                    match pos {
                        Some(p) => Ok(adapters.remove(p)),
                        None => Err(GpuError::NoMatch {
                            wanted: want,
                            present: adapters
                                .iter()
                                .map(|a| {
                                    let i = a.get_info();
                                    format!("{} ({:?})", i.name, i.backend)
                                })
                                .collect::<Vec<_>>()
                                .join(", "),
                        }),
                    }
                }
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = name;
            instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::HighPerformance,
                    force_fallback_adapter: false,
                    compatible_surface: None,
                    apply_limit_buckets: false,
                })
                .await
                .map_err(|e| GpuError::NoAdapter(format!(" ({e})")))
        }
    }

    /// Opens a device on a given adapter with its full limits and the optional features
    /// the engine can use.
    pub async fn with_adapter(adapter: wgpu::Adapter) -> Result<Gpu, GpuError> {
        let summary = AdapterSummary::of(&adapter);
        let limits = adapter.limits();
        let wanted = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SUBGROUP;
        let features = adapter.features() & wanted;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("cuttle"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| GpuError::Device { adapter: summary.name.clone(), why: e.to_string() })?;
        log::info!("adapter: {summary}");
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pipelines = pipeline::PipelineCache::default();
        Ok(Gpu { device, queue, adapter: summary, limits, pipelines, allocated: Default::default(), id })
    }

    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    /// A number no other `Gpu` of this process has.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Bytes of tensors created so far (the memory plan: nothing is freed while training).
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes a tensor view's offset must be a multiple of to be bound on its own.
    pub fn storage_offset_alignment(&self) -> u32 {
        self.limits.min_storage_buffer_offset_alignment
    }

    pub fn handle(&self) -> DeviceHandle {
        DeviceHandle(self.device.clone())
    }

    /// Calls `lost(why)` if the device is lost and `error(what)` on any validation or
    /// out-of-memory error nobody caught (the browser reports both on the page).
    pub fn watch(&self, lost: impl Fn(String) + Send + 'static, error: impl Fn(String) + Send + Sync + 'static) {
        self.device.set_device_lost_callback(move |reason, message| lost(format!("{reason:?}: {message}")));
        self.device.on_uncaptured_error(std::sync::Arc::new(move |e: wgpu::Error| error(e.to_string())));
    }

    /// Records `dispatches` in order into one compute pass, then the `copy` of a tensor into
    /// a readback buffer, and submits it all as one command buffer. Does not wait. The
    /// training step: one call per step.
    pub fn submit<'a>(&self, dispatches: impl IntoIterator<Item = &'a Dispatch>, copy: Option<(&Tensor, &Readback)>) {
        let mut enc = self.encoder("step");
        pipeline::record_all(&mut enc, dispatches);
        if let Some((t, r)) = copy {
            enc.copy_buffer_to_buffer(t.buffer(), t.offset(), r.buffer(), 0, t.bytes().min(r.bytes()));
        }
        self.queue.submit([enc.finish()]);
    }

    /// Submits `dispatches` and waits for them (tests, benchmarks and plan-time work only:
    /// the training loop never waits inside a step).
    pub fn run<'a>(&self, dispatches: impl IntoIterator<Item = &'a Dispatch>) {
        self.submit(dispatches, None);
        self.wait();
    }

    /// Copies `src` into `dst` (same size) on the GPU, submitted at once.
    pub fn copy(&self, pairs: &[(&Tensor, &Tensor)]) {
        let mut enc = self.encoder("copy");
        for (src, dst) in pairs {
            assert_eq!(src.bytes(), dst.bytes(), "copy `{}` -> `{}`", src.name, dst.name);
            enc.copy_buffer_to_buffer(src.buffer(), src.offset(), dst.buffer(), dst.offset(), src.bytes());
        }
        self.queue.submit([enc.finish()]);
    }

    /// Wall-clock seconds per run of `dispatches`, from `runs` back-to-back runs in one
    /// submit (the submit and the wait are then shared by all of them). The one timing
    /// helper: benchmarks, tile tuning, and `--factorize auto`'s layer timing.
    pub async fn seconds_per_run(&self, dispatches: &[Dispatch], runs: usize) -> f64 {
        let t0 = web_time::Instant::now();
        self.submit((0..runs.max(1)).flat_map(|_| dispatches), None);
        self.finished().await;
        t0.elapsed().as_secs_f64() / runs.max(1) as f64
    }

    /// Checks a buffer size against the device limits before wgpu sees it, so that an
    /// oversized tensor is an error naming it rather than a validation panic; counts it in
    /// `allocated` when it fits.
    pub fn check_size(&self, tensor: &str, bytes: u64) -> Result<(), GpuError> {
        self.check_limits(tensor, bytes)?;
        self.allocated.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// `check_size` without counting the bytes.
    pub fn check_limits(&self, tensor: &str, bytes: u64) -> Result<(), GpuError> {
        let too = |limit, what| GpuError::TooLarge {
            tensor: tensor.to_string(),
            bytes,
            limit,
            what,
            adapter: self.adapter.name.clone(),
        };
        if bytes > self.limits.max_buffer_size {
            return Err(too(self.limits.max_buffer_size, "buffer"));
        }
        if bytes > self.limits.max_storage_buffer_binding_size {
            return Err(too(self.limits.max_storage_buffer_binding_size, "storage binding"));
        }
        Ok(())
    }

    /// Blocks until the queue is idle (no-op on the web, where callbacks are awaited).
    fn wait(&self) {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
        }
    }

    /// Waits until everything submitted so far has run: blocking on native, awaiting the
    /// queue's callback on the web (where blocking is impossible).
    pub async fn finished(&self) {
        let (tx, rx) = futures_channel::oneshot::channel();
        self.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        self.wait();
        let _ = rx.await;
    }

    fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    }
}

/// Opens the default device for tests. Without an adapter the test is skipped with a
/// printed reason, unless `CUTTLE_REQUIRE_GPU=1` (set by CI), where it is a failure.
#[cfg(not(target_arch = "wasm32"))]
pub fn test_gpu() -> Option<Gpu> {
    match pollster::block_on(Gpu::new(&GpuOptions::from_env())) {
        Ok(g) => Some(g),
        Err(e) => {
            if std::env::var("CUTTLE_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("CUTTLE_REQUIRE_GPU=1 but no device: {e}");
            }
            eprintln!("skipped: no GPU adapter ({e})");
            None
        }
    }
}
