"""One router per resource: health, models, image operations, latent operations."""
