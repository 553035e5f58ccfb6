"""Model kinds by their CLI name."""

from .autoencoder import VAE, AutoEncoder
from .diffusion import Diffusion
from .gan import GAN

GENERATORS = {cls.kind: cls for cls in (AutoEncoder, VAE, GAN, Diffusion)}
