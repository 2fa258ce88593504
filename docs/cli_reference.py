"""The CLI reference's Markdown, from the commands typer builds: each one's help, usage and the help
record of every argument and option (what `losslab COMMAND --help` prints)."""

import typer.main

from losslab.cli import app


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    group = typer.main.get_command(app)
    commands = {name: group.get_command(None, name) for name in group.list_commands(None)}
    out = ["| command | what it does |", "|---|---|"]
    out += [f"| [`{name}`](#{name}) | {_cell((c.help or '').strip().splitlines()[0])} |"
            for name, c in commands.items()]
    for name, command in commands.items():
        context = typer.Context(command, info_name=name, parent=typer.Context(group, info_name="losslab"))
        out += ["", f"## {name}", "", f"`{command.get_usage(context).removeprefix('Usage: ')}`", "",
                (command.help or "").strip(), ""]
        records = [p.get_help_record(context) for p in command.get_params(context)]
        rows = [f"| `{_cell(term)}` | {_cell(text)} |" for term, text in filter(None, records)]
        if rows:
            out += ["| argument or option | what |", "|---|---|", *rows]
    return "\n".join(out)
