// Small data files for the browser test's pickers, written into a temporary folder:
// CIFAR-10 binary batches (random pixels, labels in turn) and an image folder of PNGs
// (train/<class>/, test/<class>/), encoded here so the test needs no image library.

import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';

// CIFAR-10's binary record: a label byte, then 3x32x32 pixels, planar.
export function cifarBatch(n, seed) {
  const rec = 1 + 3 * 32 * 32;
  const out = Buffer.alloc(n * rec);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    out[i * rec] = i % 10;
    for (let k = 1; k < rec; k++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      out[i * rec + k] = s >>> 24;
    }
  }
  return out;
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

// A w x h RGB PNG filled with `rgb`, with a lighter square whose place depends on `k`.
export function png(w, h, rgb, k) {
  const rows = [];
  for (let y = 0; y < h; y++) {
    const row = Buffer.alloc(1 + 3 * w);
    for (let x = 0; x < w; x++) {
      const lit = Math.abs(x - (k % w)) < 3 && Math.abs(y - ((3 * k) % h)) < 3;
      for (let c = 0; c < 3; c++) row[1 + 3 * x + c] = lit ? 255 : rgb[c];
    }
    rows.push(row);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const sig = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);
  return Buffer.concat([sig, chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(Buffer.concat(rows))), chunk('IEND', Buffer.alloc(0))]);
}

// Writes the fixtures under `dir`; returns their paths.
export function writeFixtures(dir) {
  const cifar = path.join(dir, 'cifar');
  fs.mkdirSync(cifar, { recursive: true });
  const train = path.join(cifar, 'data_batch_1.bin');
  const test = path.join(cifar, 'test_batch.bin');
  fs.writeFileSync(train, cifarBatch(700, 1));
  fs.writeFileSync(test, cifarBatch(400, 2));
  // Not a CIFAR-10 batch: a record cut short.
  const bad = path.join(dir, 'bad', 'data_batch_1.bin');
  fs.mkdirSync(path.dirname(bad), { recursive: true });
  fs.writeFileSync(bad, cifarBatch(3, 3).subarray(0, 5000));
  const folder = path.join(dir, 'shapes');
  const colors = { red: [200, 40, 40], green: [40, 160, 60], blue: [40, 60, 200] };
  for (const [split, count] of [['train', 12], ['test', 5]]) {
    for (const [name, rgb] of Object.entries(colors)) {
      fs.mkdirSync(path.join(folder, split, name), { recursive: true });
      for (let k = 0; k < count; k++) fs.writeFileSync(path.join(folder, split, name, `${k}.png`), png(16, 16, rgb, k));
    }
  }
  const text = path.join(dir, 'poem.txt');
  fs.writeFileSync(text, 'The quick brown fox jumps over the lazy dog.\n'.repeat(60));
  return { cifar: [train, test], bad, folder, text };
}
