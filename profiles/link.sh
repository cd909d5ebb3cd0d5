#!/usr/bin/env bash
# Link a profile of this checkout to where Snakemake finds it by its bare name, so that
# `snakemake --profile NAME` works from the repository root:
#
#   bash profiles/link.sh leonardo      # or `make profile`; env.sh runs it too
#
# Snakemake looks a bare profile name up in the working directory, then in
# $XDG_CONFIG_HOME/snakemake (~/.config/snakemake when XDG_CONFIG_HOME is unset or not an
# absolute path), then /etc/xdg/snakemake; never in profiles/. This puts a symbolic
# link to profiles/NAME into the user's directory. A link, not a copy: edits to
# profiles/NAME take effect at once, and a profile value naming a file in the profile
# directory is still read from this checkout. Other relative paths (`configfile:
# config/config.yaml`) are read from the working directory: the repository root.
#
# Running it again changes nothing. Anything else already there under that name (a
# directory, a file, a link elsewhere, a broken link) is left as it is: the script says
# what it found and exits with status 1.
set -euo pipefail

name="${1:-}"
if [ -z "$name" ] || [ "$#" -ne 1 ]; then
    echo "usage: profiles/link.sh NAME (a profile directory under profiles/, e.g. leonardo)" >&2
    exit 2
fi
profiles="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
profile="$profiles/$name"
if [ ! -f "$profile/config.yaml" ] && [ ! -f "$profile/profile.yaml" ]; then
    echo "profiles/link.sh: $profile: not a Snakemake profile; expected config.yaml or profile.yaml in it" >&2
    exit 2
fi

case "${XDG_CONFIG_HOME:-}" in
    /*) config_dir="$XDG_CONFIG_HOME/snakemake" ;;
    *) config_dir="$HOME/.config/snakemake" ;;
esac
link="$config_dir/$name"

if [ -L "$link" ] && [ -d "$link" ] && [ "$(cd "$link" && pwd -P)" = "$profile" ]; then
    echo "$link already links to $profile; nothing changed"
    exit 0
fi
if [ -L "$link" ]; then
    if [ -e "$link" ]; then
        found="a link to $(readlink "$link")"
    else
        found="a link to $(readlink "$link"), which does not exist"
    fi
elif [ -d "$link" ]; then
    found="a directory"
elif [ -e "$link" ]; then
    found="a file"
else
    mkdir -p "$config_dir"
    ln -s "$profile" "$link"
    echo "linked $link -> $profile: \`snakemake --profile $name\` uses it"
    exit 0
fi
echo "profiles/link.sh: $link: a profile named $name is already there ($found); expected a link to $profile. Left as it is: remove it and run this again to use this checkout's profile, or give the path: --profile profiles/$name" >&2
exit 1
