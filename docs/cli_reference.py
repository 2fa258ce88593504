"""The CLI reference's Markdown, from the commands typer builds: each one's help, usage and the help
record of every argument and option (what `losslab COMMAND --help` prints)."""

import typer.main

from losslab.cli import app


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def commands(group, parent: typer.Context) -> dict[str, tuple]:
    """Every command by its full name ("forecast build"), a group's commands in its place, with its context."""
    found = {}
    for name in group.list_commands(parent):
        command = group.get_command(parent, name)
        context = typer.Context(command, info_name=name, parent=parent)
        if hasattr(command, "list_commands"):  # a group (typer's own click: not click.Group)
            found.update({f"{name} {sub}": entry for sub, entry in commands(command, context).items()})
        else:
            found[name] = (command, context)
    return found


def anchor(name: str) -> str:
    return name.replace(" ", "-")


def markdown() -> str:
    group = typer.main.get_command(app)
    listed = commands(group, typer.Context(group, info_name="losslab"))
    out = ["| command | what it does |", "|---|---|"]
    out += [f"| [`{name}`](#{anchor(name)}) | {_cell((c.help or '').strip().splitlines()[0])} |"
            for name, (c, _) in listed.items()]
    for name, (command, context) in listed.items():
        out += ["", f"## {name} {{#{anchor(name)}}}", "", f"`{command.get_usage(context).removeprefix('Usage: ')}`", "",
                (command.help or "").strip(), ""]
        records = [p.get_help_record(context) for p in command.get_params(context)]
        rows = [f"| `{_cell(term)}` | {_cell(text)} |" for term, text in filter(None, records)]
        if rows:
            out += ["| argument or option | what |", "|---|---|", *rows]
    return "\n".join(out)
