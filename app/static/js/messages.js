// What the page tells people about an error, by the API's error code. The API's own words (written
// for whoever runs the service: settings, limits) stay available under "Details".

const later = (err) => (err.retryAfter ? `in ${err.retryAfter} s` : "in a moment");

const FRIENDLY = {
  network: () => "The service cannot be reached. Check your connection or that the service is running, then try again.",
  unauthorized: () => "The service needs a valid API token. Ask whoever runs it for one.",
  too_many_pixels: () => "This image has more pixels than the service accepts. Crop or resize it, then try again.",
  too_much_work: () => "This image is too big for the service to process in one go. Crop or resize it, then try again.",
  payload_too_large: () => "This file is larger than the service accepts. Resize it or save it as a JPEG, then try again.",
  unsupported_media_type: () => "The service cannot read this file as an image. Use a PNG, JPEG, WebP, BMP or TIFF.",
  overloaded: (err) => `The service is busy with other requests. Try again ${later(err)}.`,
  unavailable: (err) => `The service is unavailable right now. Try again ${later(err)}.`,
  not_ready: (err) => `The service is starting or restarting. Try again ${later(err)}.`,
  shutting_down: (err) => `The service is restarting. Try again ${later(err)}.`,
  timeout: () => "The service took too long and stopped this request. Try a smaller image, or try again when it is less busy.",
};

/** A sentence for people for an ApiError's ``code``, or null where the API's own words will do. */
export function friendly(err) {
  const make = err && FRIENDLY[err.code];
  return make ? make(err) : null;
}
