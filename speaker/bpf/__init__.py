"""eBPF (tc) SRv6 datapath: C source, its build, ctypes libbpf, map codecs, the adapter."""
