"""The `yipanqi` command: one click group per concern, each in its own module."""

from __future__ import annotations

import click

from cli.assess import assess
from cli.bulk import stats
from cli.enrol import enrol, sign
from cli.certificate import certificate
from cli.duplicates import duplicates
from cli.claims import claims
from cli.federation import federation
from cli.output import SafeGroup
from cli.person import person
from cli.secret import secret_install, secret_request, secret_seal
from cli.report import report
from cli.request import request
from cli.run import hub, node
from cli.service import service
from cli.status import conflicts, quarantine, status
from cli.upgrade import upgrade


@click.group(cls=SafeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="yipanqi")
def main() -> None:
    """yipanqi: the federated exchange of migrant-population case records (一盘棋)."""


for command in (federation, node, hub, person, status, quarantine, conflicts, stats, assess, report, request):
    main.add_command(command)
main.add_command(enrol)
federation.add_command(sign)
federation.add_command(secret_seal)
enrol.add_command(secret_request)
enrol.add_command(secret_install)
main.add_command(certificate)
main.add_command(service)
main.add_command(duplicates)
main.add_command(claims)
main.add_command(upgrade)


def _lazy_demo() -> None:
    from cli.demo import demo

    main.add_command(demo)


try:
    _lazy_demo()
except ImportError:  # demo not built yet
    pass

if __name__ == "__main__":
    main()
