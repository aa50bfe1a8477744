"""Kubernetes mode: a thin typed adapter over the `kubernetes` client and the flatroute API.

Nothing outside this package touches kubernetes client objects: callers get plain JSON
documents (dicts straight off the wire) from `api.KubeApi`, watch caches from `reflector`,
a Lease elector from `leader`, the custom resources' definitions from `crds`, and the
mapping of Nodes and flatroute resources to a `Fabric` from `fabric`.
"""
