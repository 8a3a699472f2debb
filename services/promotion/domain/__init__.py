"""The promotion domain: money and the price quote. Pure: standard library and the kernel's
errors only, no I/O, no clock (times are passed in)."""
