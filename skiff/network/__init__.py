"""Networking: IPAM, the bridge driver (netlink), veth pairs, NAT and port
publishing (iptables), the embedded DNS of user networks.

``from skiff.network import NetworkManager`` — imported lazily so that
importing the package stays cheap.
"""

__all__ = ["NetworkManager"]


def __getattr__(name):
    if name == "NetworkManager":
        from skiff.network.manager import NetworkManager
        return NetworkManager
    raise AttributeError(name)
