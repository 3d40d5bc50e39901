package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// Completion scripts ask the stork binary itself what may follow the words
// typed so far (urfave/cli's --generate-bash-completion), so they follow
// every command, subcommand and flag without being regenerated.
const bashCompletion = `# bash completion for stork: source it, or put it in
# /etc/bash_completion.d/stork (stork completion bash > /etc/bash_completion.d/stork)
_stork_complete() {
	local cur="${COMP_WORDS[COMP_CWORD]}"
	local words=("${COMP_WORDS[@]:0:COMP_CWORD}")
	local opts
	if [[ "$cur" == -* ]]; then
		opts=$("${words[@]}" "$cur" --generate-bash-completion 2>/dev/null)
	else
		opts=$("${words[@]}" --generate-bash-completion 2>/dev/null)
	fi
	COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
}
complete -o bashdefault -o default -F _stork_complete stork
`

const zshCompletion = `#compdef stork
# zsh completion for stork: put it as _stork in a directory of $fpath
# (stork completion zsh > "${fpath[1]}/_stork"), or source it after compinit.
_stork() {
	local -a opts
	local cur=${words[-1]}
	if [[ "$cur" == "-"* ]]; then
		opts=("${(@f)$(_CLI_ZSH_AUTOCOMPLETE_HACK=1 ${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
	else
		opts=("${(@f)$(_CLI_ZSH_AUTOCOMPLETE_HACK=1 ${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
	fi
	if [[ "${opts[1]}" != "" ]]; then
		_describe 'values' opts
	else
		_files
	fi
}
if [[ "$funcstack[1]" == "_stork" ]]; then
	_stork "$@"
else
	compdef _stork stork
fi
`

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script for bash or zsh",
		UsageText: "stork completion bash|zsh",
		Action: func(c *cli.Context) error {
			switch c.Args().First() {
			case "bash":
				fmt.Fprint(c.App.Writer, bashCompletion)
			case "zsh":
				fmt.Fprint(c.App.Writer, zshCompletion)
			default:
				return usageError(c, "want bash or zsh, got %q", c.Args().First())
			}
			return nil
		},
	}
}
