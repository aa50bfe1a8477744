"""The node agent: desired NodeState -> BGP announcements (ExaBGP) and kernel routes (netlink)."""
