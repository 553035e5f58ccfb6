"""synthscope.generators — Built-in data, the corpus format, and the AE / VAE / GAN / diffusion generators."""
