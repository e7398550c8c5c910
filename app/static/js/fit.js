// Before an image is sent: whether the service would refuse it for its size, by the limits that
// GET /v1/models gives, in words for people (and what to do about it).

import { bytes } from "./ui.js";

const megapixels = (n) => `${(n / 1e6).toFixed(n < 1e6 ? 2 : 1)} megapixels`;

/** The largest size with the image's aspect ratio that holds at most ``most`` pixels. */
function shrunk(width, height, most) {
  const scale = Math.sqrt(most / (width * height));
  return `${Math.max(1, Math.floor(width * scale))}×${Math.max(1, Math.floor(height * scale))}`;
}

/**
 * Why ``model`` would refuse to denoise this upload, or null: {text, certain}. ``certain``: the
 * service's limit is exact (pixels, bytes); otherwise the work is estimated from the model's
 * ``denoise_work_per_pixel``, and the service has the last word.
 */
export function refusal(blob, image, model, limits) {
  if (!limits) return null;
  if (blob.size > limits.max_upload_bytes) {
    return {
      certain: true,
      text: `This file is ${bytes(blob.size)}; the service accepts uploads of up to ` +
        `${bytes(limits.max_upload_bytes)}. Resize it or save it as a JPEG, then try again.`,
    };
  }
  if (!image) return null; // the browser cannot read it: the service answers for itself
  const { width, height } = image;
  const pixels = width * height;
  const size = `${width}×${height} (${megapixels(pixels)})`;
  if (pixels > limits.max_pixels || Math.max(width, height) > limits.max_side) {
    const most = Math.min(limits.max_pixels, (limits.max_side / Math.max(width, height)) ** 2 * pixels);
    return {
      certain: true,
      text: `This image is ${size}; the service takes images of up to ${megapixels(limits.max_pixels)}. ` +
        `Crop it or resize it to ${shrunk(width, height, most)} or less, then try again.`,
    };
  }
  const perPixel = model && model.denoise_work_per_pixel;
  const factor = perPixel && perPixel[image.gray ? "gray" : "colour"];
  if (factor && pixels * factor > limits.max_work_pixels) {
    const most = limits.max_work_pixels / factor;
    return {
      certain: false,
      text: `This image is ${size}, more than ${model.name} can denoise in one go on this ` +
        `service (about ${megapixels(most)}). Crop it or resize it to about ` +
        `${shrunk(width, height, most * 0.98)}, then try again.`,
    };
  }
  return null;
}
