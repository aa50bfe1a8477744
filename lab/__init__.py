"""`flatroute lab`: the whole fabric on one Linux machine, with namespaces, real FRR ToRs,
real speakers (ExaBGP), the real controller and pods made by the real CNI plugin."""
