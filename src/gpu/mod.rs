//! The only module that touches wgpu directly: adapter choice, the device and its limits,
//! tensors (storage buffers with a name and a shape), the pipeline cache, recorded
//! dispatches and readback.
//!
//! Acquiring a device (`Gpu::new`) is separate from using it: tests and the browser build
//! create their own `Gpu` and pass it in. Everything that waits on the GPU is `async`
//! (the browser cannot block); native callers wrap it with `pollster::block_on`.

mod buffer;
mod pipeline;

pub use buffer::{map_read, read_f32, read_u32, Tensor};
pub use pipeline::{grid_1d, record_all, seconds_per_run, Dispatch, PipelineCache, ShaderId, MAX_GROUPS, SHADERS};

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
/// restricts the backends searched. `tune`: choose GEMM tiles by measurement and cache
/// them (`ops::tune`); `CUTTLE_TUNE=1` sets it, `CUTTLE_TUNE=0` clears it.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    pub name: Option<String>,
    pub tune: bool,
}

impl GpuOptions {
    pub fn from_env() -> Self {
        GpuOptions {
            name: std::env::var("CUTTLE_ADAPTER").ok().filter(|s| !s.is_empty()),
            tune: std::env::var("CUTTLE_TUNE").is_ok_and(|v| v == "1"),
        }
    }

    /// The command line's defaults: as `from_env`, but tuning unless `CUTTLE_TUNE=0`
    /// (a run pays for measuring once per adapter; the library and its tests do not).
    pub fn for_cli() -> Self {
        GpuOptions { tune: std::env::var("CUTTLE_TUNE").map_or(true, |v| v != "0"), ..GpuOptions::from_env() }
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
    pub features: wgpu::Features,
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
            features: adapter.features(),
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
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    pub pipelines: PipelineCache,
    /// Bytes of tensors created on this device so far (the memory plan's size; buffers
    /// are never freed during training, so this is also its peak).
    pub allocated: std::sync::atomic::AtomicU64,
    /// GEMM tiles measured on this device (`ops::tune`); off unless `GpuOptions::tune`.
    pub tiles: crate::ops::tune::TileCache,
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
        let mut gpu = Self::with_adapter(adapter).await?;
        if opts.tune {
            gpu.tiles = crate::ops::tune::TileCache::open(&gpu.adapter);
        }
        Ok(gpu)
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
        let pipelines = PipelineCache::default();
        Ok(Gpu {
            device,
            queue,
            adapter: summary,
            limits,
            pipelines,
            allocated: Default::default(),
            tiles: Default::default(),
        })
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

    /// Submits one encoder's work and waits for it (tests and benchmarks only; the
    /// training loop never waits inside a step).
    pub fn submit_and_wait(&self, encoder: wgpu::CommandEncoder) {
        self.queue.submit([encoder.finish()]);
        self.wait();
    }

    /// Blocks until the queue is idle (no-op on the web, where callbacks are awaited).
    pub fn wait(&self) {
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

    pub fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
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
