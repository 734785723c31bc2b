#!/usr/bin/env bash
# What can be checked of yocto/meta-edgeway without bitbake: the recipe's
# version, module path, installed files, unit, user and gateway list match
# the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
layer=yocto/meta-edgeway
fail() { echo "yocto-check: $*" >&2; exit 1; }

version=$(tr -d ' \n' < packaging/VERSION)
recipes=("$layer"/recipes-connectivity/edgeway/edgeway_*.bb)
((${#recipes[@]} == 1)) && [ -f "${recipes[0]}" ] || fail "want exactly one edgeway_<version>.bb, have: ${recipes[*]}"
bb=${recipes[0]}
rv=${bb##*/edgeway_}; rv=${rv%.bb}
[ "$rv" = "$version" ] || fail "recipe version $rv ≠ packaging/VERSION $version (rename $bb)"

grep -q '^LAYERSERIES_COMPAT_edgeway = ".*scarthgap.*"' "$layer/conf/layer.conf" || fail "layer.conf: LAYERSERIES_COMPAT lacks scarthgap"

module=$(sed -n 's/^module //p' go.mod)
grep -q "^GO_IMPORT = \"$module\"$" "$bb" || fail "GO_IMPORT ≠ go.mod module $module"
grep -q '^inherit go-mod systemd useradd$' "$bb" || fail "recipe must inherit go-mod systemd useradd"
grep -q -- '-mod=vendor' "$bb" || fail "recipe does not build with -mod=vendor"

# Every repository file the recipe installs exists.
files=$(grep -o '${EDGEWAY_SRC}/[^ ]*' "$bb" | sed 's|${EDGEWAY_SRC}/||' | sort -u)
[ -n "$files" ] || fail "recipe installs nothing from the source tree"
for f in $files; do
	[ -f "$f" ] || fail "recipe installs $f, which is not in the repository"
done
for f in systemd/edgeway.service configs/edgeway.toml systemd/60-edgeway.rules; do
	grep -q "\${EDGEWAY_SRC}/$f" "$bb" || fail "recipe does not install $f"
done

# The unit.
units=$(cd systemd && ls *.service)
sdsvc=$(sed -n 's/^SYSTEMD_SERVICE:${PN} = "\(.*\)"$/\1/p' "$bb")
[ "$sdsvc" = "$units" ] || fail "SYSTEMD_SERVICE \"$sdsvc\" ≠ units in systemd/: $units"
grep -q '^ExecStart=/usr/bin/edgeway ' systemd/edgeway.service || fail "unit ExecStart is not /usr/bin/edgeway (go.bbclass installs to bindir)"

# The user and groups the unit runs with.
user=$(sed -n 's/^User=//p' systemd/edgeway.service)
groups=$(sed -n 's/^SupplementaryGroups=//p' systemd/edgeway.service)
grep -q -- "--groups $(echo "$groups" | tr ' ' ',')" "$bb" || fail "USERADD_PARAM groups ≠ SupplementaryGroups=$groups"
grep -q "shell \${base_sbindir}/nologin $user\"" "$bb" || fail "USERADD_PARAM does not create $user"
grep -q "^u $user " systemd/edgeway.sysusers || fail "systemd/edgeway.sysusers does not create $user"
state=$(sed -n 's/^StateDirectory=//p' systemd/edgeway.service)
grep -q "localstatedir}/lib/$state" "$bb" || fail "recipe's data dir ≠ StateDirectory=$state"

# The config: the sed the recipe runs must hit data_dir.
grep -q '^data_dir = ' configs/edgeway.toml || fail "configs/edgeway.toml has no data_dir line for the recipe to rewrite"
grep -q '^CONFFILES:${PN} = "${sysconfdir}/edgeway/edgeway.toml"$' "$bb" || fail "config is not a CONFFILE"

# Every gateway under protocols/ can be left out by PACKAGECONFIG.
gws=$(sed -n 's/^EDGEWAY_GATEWAYS = "\(.*\)"$/\1/p' "$bb")
for d in protocols/*/; do
	[ -d "$d" ] || continue
	k=$(basename "$d")
	[[ " $gws " == *" $k "* ]] || fail "gateway $k (protocols/$k) missing from EDGEWAY_GATEWAYS"
	grep -q "^PACKAGECONFIG\[$k\] = " "$bb" || fail "no PACKAGECONFIG[$k]"
done
echo "yocto-check: $bb matches the repository (version $version, unit $units, gateways: $gws)"
