"""synthscope.detectors — AI-image detectors: CNN and CLIP real-vs-fake discriminators, evaluation, folder scans."""
