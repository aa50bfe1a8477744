"""Root tests of the eBPF SRv6 datapath."""
