"""ip-restriction: let only some client addresses through (or keep some out).

Conf ``{"whitelist": [str], "blacklist": [str], "message": str}`` with exactly one of the
two lists. Entries are IPv4/IPv6 addresses or CIDR blocks (``"10.0.0.0/8"``,
``"2001:db8::/32"``; host bits are ignored). The client address is ``req.src_ip`` (an
IPv4-mapped IPv6 address counts as its IPv4 address). A client not on the whitelist, or on
the blacklist, gets 403 with the JSON body ``{"message": message}``; the default message
is "Your IP address is not allowed". With a whitelist, a request without a client
address is refused; with a blacklist it passes.

A guard: a conf that does not parse (a malformed entry, both lists or neither) does not
open the door. Every call with it is refused with 503 until the route is fixed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from a6runner import ConfError, Plugin, Request
from a6runner.confs import Length, ignore_unknown_fields

if TYPE_CHECKING:  # loaded with the first conf that needs it: ~0.25 MiB a runner may save
    import ipaddress

NON_EMPTY = Length(min=1)


@ignore_unknown_fields
@dataclass(slots=True)
class IPRestrictionConf:
    whitelist: Annotated[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], NON_EMPTY] = ()
    blacklist: Annotated[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], NON_EMPTY] = ()
    message: str = "Your IP address is not allowed"
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(init=False)
    allow_listed: bool = field(init=False)  # True: a whitelist, False: a blacklist
    denial: bytes = field(init=False)  # the 403 body

    def __post_init__(self) -> None:
        # (a list given is never empty: empty means absent)
        if bool(self.whitelist) == bool(self.blacklist):
            raise ConfError("give exactly one of whitelist and blacklist")
        self.allow_listed = bool(self.whitelist)
        self.networks = self.whitelist or self.blacklist
        self.denial = json.dumps({"message": self.message}).encode()


class IPRestriction(Plugin):
    name = "ip-restriction"
    conf_type = IPRestrictionConf
    conf_schema = {"oneOf": [{"required": ["whitelist"]}, {"required": ["blacklist"]}]}
    guard = True

    def request_filter(self, conf: IPRestrictionConf, req: Request) -> None:
        ip = req.src_ip
        if ip is not None and ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        # An address never belongs to a network of the other IP version.
        listed = ip is not None and any(ip in net for net in conf.networks)
        if listed != conf.allow_listed:
            req.respond(403, conf.denial, {"Content-Type": "application/json"})
