"""Prometheus metrics of the speaker, on their own registry (no global state between tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class Metrics:
    def __init__(self, node: str) -> None:
        self.registry = CollectorRegistry()
        self.node = node
        labels = ["node", "peer", "tor"]
        self.session_up = Gauge("flatroute_speaker_bgp_session_up",
                                "1 when the BGP session is established", labels,
                                registry=self.registry)
        self.prefixes_sent = Gauge("flatroute_speaker_bgp_prefixes_sent",
                                   "prefixes announced to the peer", labels,
                                   registry=self.registry)
        self.prefixes_received = Gauge("flatroute_speaker_bgp_prefixes_received",
                                       "prefixes received from the peer", labels,
                                       registry=self.registry)
        self.session_flaps = Gauge("flatroute_speaker_bgp_session_flaps",
                                   "times the session left established", labels,
                                   registry=self.registry)
        self.bfd_up = Gauge("flatroute_speaker_bfd_up", "1 when the BFD session is up", labels,
                            registry=self.registry)
        self.routes = Gauge("flatroute_speaker_kernel_routes",
                            "kernel routes owned by the speaker, by kind", ["node", "kind"],
                            registry=self.registry)
        self.reconcile_seconds = Histogram(
            "flatroute_speaker_reconcile_duration_seconds", "duration of a reconcile pass",
            ["node"], registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.reconcile_errors = Counter("flatroute_speaker_reconcile_errors",
                                        "reconcile passes that failed", ["node"],
                                        registry=self.registry)
        self.exabgp_starts = Gauge("flatroute_speaker_exabgp_starts",
                                   "times ExaBGP was started", ["node"], registry=self.registry)
        self.missing_features = Gauge("flatroute_speaker_missing_kernel_features",
                                      "kernel features the node state would need but lacks",
                                      ["node"], registry=self.registry)

        self.capability = Gauge("flatroute_speaker_kernel_capability",
                                "1 when the capability probe found the feature working",
                                ["node", "check"], registry=self.registry)
        self.datapath = Gauge("flatroute_speaker_srv6_datapath",
                              "1 for the SRv6 datapath in use (kernel or bpf)",
                              ["node", "datapath"], registry=self.registry)
        self.bpf_entries = Gauge("flatroute_speaker_bpf_map_entries",
                                 "entries in the eBPF SRv6 maps, by map", ["node", "map"],
                                 registry=self.registry)
        self.bpf_packets = Gauge("flatroute_speaker_bpf_packets",
                                 "eBPF SRv6 datapath counters summed over CPUs (drops: no_sid, "
                                 "sl_mismatch, too_big, fib_fail)", ["node", "counter"],
                                 registry=self.registry)

        self.service_routes = Gauge("flatroute_speaker_service_route",
                                    "1 for each service route announced (to any ToR), by "
                                    "service, source and reason",
                                    ["node", "prefix", "service", "source", "reason"],
                                    registry=self.registry)

    def set_service_routes(self, rows: tuple[dict[str, object], ...]) -> None:
        """Exactly the service routes of `rows` that are announced, and no stale series."""
        self.service_routes.clear()
        for r in rows:
            if r["announcedTo"]:
                self.service_routes.labels(self.node, r["prefix"], r["service"], r["source"],
                                           r["reason"]).set(1)

    def serve(self, port: int, addr: str = "") -> None:
        start_http_server(port, addr=addr, registry=self.registry)
