"""Device profiles (TOML data only), installed as ``edgelll.devices``."""
