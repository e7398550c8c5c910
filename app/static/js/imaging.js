// Pixels in the browser: decode an image, add Gaussian noise, encode a PNG, measure PSNR.

/**
 * Decode a Blob to {width, height, gray, alpha, rgba}: the pixels as RGBA bytes, without colour
 * management, whether every pixel has R = G = B, and whether any pixel is less than opaque. A 2D
 * canvas keeps its pixels premultiplied by alpha, so the colour of a semi-transparent pixel comes
 * back rounded: off by up to about 128 / alpha levels, about half a level once composited. Only
 * the noisy copy is built from these pixels; a clean upload sends the file's own bytes.
 */
export async function decode(blob) {
  const bitmap = await createImageBitmap(blob, {
    colorSpaceConversion: "none",
    premultiplyAlpha: "none",
  });
  const { width, height } = bitmap;
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, width, height).data;
  let gray = true;
  let alpha = false;
  for (let i = 0; i < rgba.length && (gray || !alpha); i += 4) {
    if (rgba[i] !== rgba[i + 1] || rgba[i] !== rgba[i + 2]) gray = false;
    if (rgba[i + 3] !== 255) alpha = true;
  }
  return { width, height, gray, alpha, rgba };
}

/** A seeded generator of standard normal draws (mulberry32 + Box–Muller). */
function normals(seed) {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  let spare = null;
  return () => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    const u = 1 - uniform();
    const v = uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  };
}

/**
 * Add Gaussian noise of std ``sigma`` (0–255 scale), rounded and clipped to 8 bits. A gray image
 * gets one draw per pixel and stays gray. Alpha is kept as it is, as the service keeps it, and a
 * fully transparent pixel gets no noise: it shows nothing.
 */
export function addNoise(image, sigma, seed = 1) {
  const next = normals(seed);
  const out = new Uint8ClampedArray(image.rgba);
  const { rgba } = image;
  for (let i = 0; i < rgba.length; i += 4) {
    if (rgba[i + 3] === 0) continue;
    if (image.gray) {
      const v = rgba[i] + sigma * next();
      out[i] = out[i + 1] = out[i + 2] = Math.round(v); // Uint8ClampedArray clips to 0..255
    } else {
      for (let c = 0; c < 3; c++) out[i + c] = Math.round(rgba[i + c] + sigma * next());
    }
  }
  return { ...image, rgba: out };
}

/**
 * PSNR in dB between two images of the same size over their colour channels (RGB, or one if
 * gray), where ``a`` is not fully transparent.
 */
export function psnr(a, b) {
  if (a.width !== b.width || a.height !== b.height) return NaN;
  const channels = a.gray && b.gray ? 1 : 3;
  let sum = 0;
  let count = 0;
  for (let i = 0; i < a.rgba.length; i += 4) {
    if (a.rgba[i + 3] === 0) continue;
    for (let c = 0; c < channels; c++) {
      const d = a.rgba[i + c] - b.rgba[i + c];
      sum += d * d;
    }
    count += channels;
  }
  const mse = sum / count;
  return mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse);
}

// ---- PNG encoding (8-bit gray or RGB, with alpha or not, no filtering; zlib from the browser's
// CompressionStream)

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

async function zlib(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * Encode an image as a PNG Blob: gray (colour type 0) when ``gray``, else RGB (type 2); with
 * ``alpha``, gray + alpha (4) or RGBA (6).
 */
export async function encodePng(image) {
  const { width, height, gray, alpha, rgba } = image;
  const channels = (gray ? 1 : 3) + (alpha ? 1 : 0);
  const stride = width * channels + 1;
  const raw = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    let o = y * stride + 1; // filter byte 0 (None) first
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4;
      raw[o++] = rgba[i];
      if (!gray) {
        raw[o++] = rgba[i + 1];
        raw[o++] = rgba[i + 2];
      }
      if (alpha) raw[o++] = rgba[i + 3];
    }
  }
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, (gray ? 0 : 2) + (alpha ? 4 : 0), 0, 0, 0], 8);
  const signature = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
  const parts = [signature, chunk("IHDR", header), chunk("IDAT", await zlib(raw)), chunk("IEND", new Uint8Array())];
  return new Blob(parts, { type: "image/png" });
}
