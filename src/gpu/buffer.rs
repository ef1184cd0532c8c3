//! Tensors: a named, shaped view of 4-byte elements (f32 or u32) in a storage buffer.
//! A tensor may be a sub-range of a larger buffer (all parameters live in one flat buffer
//! so the optimizer updates them in one dispatch); the offset is then a multiple of the
//! device's storage-offset alignment.

use super::{Gpu, GpuError};
use wgpu::util::DeviceExt;

#[derive(Clone, Debug)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    buf: wgpu::Buffer,
    /// Byte offset of element 0 inside `buf`.
    offset: u64,
}

const USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

impl Tensor {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn bytes(&self) -> u64 {
        self.len() as u64 * 4
    }

    /// A zero-filled tensor, checked against the device limits first.
    pub fn zeros(gpu: &Gpu, name: &str, shape: &[usize]) -> Result<Tensor, GpuError> {
        gpu.check_size(name, Self::bytes_of(shape))?;
        Ok(Self::create(gpu, name, shape))
    }

    /// A zero-filled tensor outside the memory plan: checked against the limits but not
    /// counted in `Gpu::allocated`, for short-lived work at plan time (timing tile
    /// candidates) that is freed before training starts.
    pub fn scratch(gpu: &Gpu, name: &str, shape: &[usize]) -> Result<Tensor, GpuError> {
        gpu.check_limits(name, Self::bytes_of(shape))?;
        Ok(Self::create(gpu, name, shape))
    }

    fn bytes_of(shape: &[usize]) -> u64 {
        (shape.iter().product::<usize>().max(1) * 4) as u64
    }

    fn create(gpu: &Gpu, name: &str, shape: &[usize]) -> Tensor {
        let buf = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(name),
            size: Self::bytes_of(shape),
            usage: USAGE,
            mapped_at_creation: false,
        });
        Tensor { name: name.to_string(), shape: shape.to_vec(), buf, offset: 0 }
    }

    /// A tensor initialised from host data (f32 or u32).
    pub fn from_slice<T: bytemuck::Pod>(
        gpu: &Gpu,
        name: &str,
        shape: &[usize],
        data: &[T],
    ) -> Result<Tensor, GpuError> {
        assert_eq!(std::mem::size_of::<T>(), 4, "tensors hold 4-byte elements");
        assert_eq!(shape.iter().product::<usize>(), data.len(), "shape of `{name}`");
        let bytes = (data.len().max(1) * 4) as u64;
        gpu.check_size(name, bytes)?;
        let contents: &[u8] = if data.is_empty() { &[0u8; 4] } else { bytemuck::cast_slice(data) };
        let buf = gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(name),
            contents,
            usage: USAGE,
        });
        Ok(Tensor { name: name.to_string(), shape: shape.to_vec(), buf, offset: 0 })
    }

    /// A view of this tensor's memory: `shape` elements from element `at` on (a multiple
    /// of the storage-offset alignment when it is bound on its own).
    pub fn slice(&self, name: &str, shape: &[usize], at: usize) -> Tensor {
        let len: usize = shape.iter().product();
        assert!(at + len <= self.len(), "`{name}`: a view of {len} elements at {at} past the end of `{}`", self.name);
        Tensor {
            name: name.to_string(),
            shape: shape.to_vec(),
            buf: self.buf.clone(),
            offset: self.offset + at as u64 * 4,
        }
    }

    /// Whether two tensors are views of the same buffer.
    pub fn same_buffer(&self, other: &Tensor) -> bool {
        self.buf == other.buf
    }

    pub(super) fn buffer(&self) -> &wgpu::Buffer {
        &self.buf
    }

    pub(super) fn offset(&self) -> u64 {
        self.offset
    }

    pub(super) fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buf,
            offset: self.offset,
            size: std::num::NonZeroU64::new(self.bytes().max(4)),
        })
    }

    /// Overwrites the tensor from host data (outside the step loop: init, checkpoints).
    pub fn write<T: bytemuck::Pod>(&self, gpu: &Gpu, data: &[T]) {
        assert_eq!(data.len(), self.len(), "write to `{}`", self.name);
        gpu.queue.write_buffer(&self.buf, self.offset, bytemuck::cast_slice(data));
    }

    /// Overwrites the tensor with one plain struct of exactly its size (the per-step state:
    /// queued, not submitted, so the training loop can call it).
    pub fn write_struct<T: bytemuck::Pod>(&self, gpu: &Gpu, value: &T) {
        assert_eq!(std::mem::size_of::<T>() as u64, self.bytes(), "write to `{}`", self.name);
        gpu.queue.write_buffer(&self.buf, self.offset, bytemuck::bytes_of(value));
    }
}

/// Copies tensors to the host. All copies share one encoder, one staging buffer and one
/// map, so reading many tensors costs one round trip.
async fn read_raw(gpu: &Gpu, tensors: &[&Tensor]) -> Result<Vec<Vec<u8>>, GpuError> {
    let total: u64 = tensors.iter().map(|t| t.bytes()).sum::<u64>().max(4);
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: total,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = gpu.encoder("readback");
    let mut at = 0;
    for t in tensors {
        if t.bytes() > 0 {
            enc.copy_buffer_to_buffer(&t.buf, t.offset, &staging, at, t.bytes());
        }
        at += t.bytes();
    }
    gpu.queue.submit([enc.finish()]);
    map_read(gpu, &staging, |bytes| {
        let mut at = 0usize;
        tensors
            .iter()
            .map(|t| {
                let n = t.bytes() as usize;
                at += n;
                bytes[at - n..at].to_vec()
            })
            .collect()
    })
    .await
}

/// Maps a MAP_READ buffer whose copies are already submitted, hands its bytes to `f`, and
/// unmaps it. The one place that waits for a readback: awaited on the web, polled on
/// native; it allocates nothing itself, so the training loop can use it.
pub(super) async fn map_read<T>(gpu: &Gpu, buf: &wgpu::Buffer, f: impl FnOnce(&[u8]) -> T) -> Result<T, GpuError> {
    let (tx, rx) = futures_channel::oneshot::channel();
    buf.slice(..).map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    gpu.wait();
    rx.await
        .map_err(|_| GpuError::Readback("map callback dropped".into()))?
        .map_err(|e| GpuError::Readback(e.to_string()))?;
    let out = {
        let view = buf.slice(..).get_mapped_range().map_err(|e| GpuError::Readback(e.to_string()))?;
        f(&view)
    };
    buf.unmap();
    Ok(out)
}

/// A persistent staging buffer for reading a few bytes back every so often inside the
/// training loop (loss totals): created once at plan time, filled by `Gpu::submit`'s copy,
/// mapped by `read`. Nothing is allocated per read.
pub struct Readback {
    buf: wgpu::Buffer,
    bytes: u64,
}

impl Readback {
    pub fn new(gpu: &Gpu, name: &str, bytes: u64) -> Readback {
        let buf = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(name),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Readback { buf, bytes }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Waits for the last copy into this buffer and fills `out` from it.
    pub async fn read_into<T: bytemuck::Pod>(&self, gpu: &Gpu, out: &mut [T]) -> Result<(), GpuError> {
        let dst: &mut [u8] = bytemuck::cast_slice_mut(out);
        let n = dst.len().min(self.bytes as usize);
        map_read(gpu, &self.buf, |bytes| dst[..n].copy_from_slice(&bytes[..n])).await
    }

    pub(super) fn buffer(&self) -> &wgpu::Buffer {
        &self.buf
    }
}

/// Reads f32 tensors back to the host, one `Vec` per tensor.
pub async fn read_f32(gpu: &Gpu, tensors: &[&Tensor]) -> Result<Vec<Vec<f32>>, GpuError> {
    Ok(read_raw(gpu, tensors).await?.into_iter().map(|b| bytemuck::pod_collect_to_vec(&b)).collect())
}

/// Reads u32 tensors back to the host, one `Vec` per tensor.
pub async fn read_u32(gpu: &Gpu, tensors: &[&Tensor]) -> Result<Vec<Vec<u32>>, GpuError> {
    Ok(read_raw(gpu, tensors).await?.into_iter().map(|b| bytemuck::pod_collect_to_vec(&b)).collect())
}
