/**
 * A minimal PNG encoder for 8-bit greyscale images, on `node:zlib`.
 *
 * @module
 */

import { deflateSync } from "node:zlib";

/** An 8-bit greyscale image, row-major. */
export interface GrayImage {
  width: number;
  height: number;
  /** `width * height` bytes, 0 black to 255 white. */
  pixels: Uint8Array;
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** The CRC-32 PNG uses for each chunk. */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** Encodes a greyscale image as PNG bytes. */
export function encodePng(image: GrayImage): Uint8Array {
  const { width, height, pixels } = image;
  if (pixels.length !== width * height) {
    throw new RangeError(
      `Cannot encode PNG as pixels must hold width * height = ${
        width * height
      } bytes: current length is ${pixels.length}`,
    );
  }
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header[8] = 8; // bit depth
  header[9] = 0; // colour type: greyscale
  // Each scanline starts with filter type 0 (none).
  const raw = new Uint8Array(height * (width + 1));
  for (let y = 0; y < height; y++) {
    raw.set(pixels.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  }
  const parts = [
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", new Uint8Array(deflateSync(raw))),
    chunk("IEND", new Uint8Array(0)),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/**
 * Lays out pairs as a grid: each band of `columns` pairs is one row of
 * domain A's images with the matching row of domain B's images under it,
 * so each pair stands in one column. `domains[d]` holds `count * side *
 * side` floats in [0, 1]. Bands are separated by a grey line.
 */
export function pairGrid(
  domains: Float32Array[],
  count: number,
  side: number,
  columns: number = Math.min(count, 10),
): GrayImage {
  const gap = 2;
  const bands = Math.ceil(count / columns);
  const bandHeight = domains.length * side + gap;
  const width = columns * (side + gap) + gap;
  const height = bands * bandHeight + gap;
  const pixels = new Uint8Array(width * height);
  for (let band = 0; band < bands; band++) {
    const top = gap + band * bandHeight;
    // A grey rule between bands tells the pairs of one band from the next.
    if (band > 0) pixels.fill(96, (top - 1) * width, top * width);
    for (let col = 0; col < columns; col++) {
      const k = band * columns + col;
      if (k >= count) break;
      domains.forEach((images, d) => {
        for (let y = 0; y < side; y++) {
          for (let x = 0; x < side; x++) {
            const v = images[k * side * side + y * side + x];
            pixels[
              (top + d * side + y) * width + gap + col * (side + gap) + x
            ] = Math.round(Math.min(1, Math.max(0, v)) * 255);
          }
        }
      });
    }
  }
  return { width, height, pixels };
}
