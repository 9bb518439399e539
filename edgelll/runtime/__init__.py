"""What runs on a device: numpy and the array API only, never torch (``import edgelll.runtime``
must work where torch is not installed)."""
