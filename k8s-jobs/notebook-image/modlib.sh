# modlib: the shared module library's environment, for login shells and the Jupyter server.
# Installed as /etc/profile.d/modlib.sh, which sorts after Debian's lmod.sh: Lmod is initialised
# first, then the target's env.sh sets MODULEPATH, LMOD_RC and the rest (a MODULEPATH set before
# Lmod's init would be extended by it; one set after is the library's alone).
# MODLIB_ROOT is where the library volume is mounted (the path it was built at), MODLIB_TARGET the
# target whose trees this notebook sees (cpu, or cuda on GPU nodes); both come from the pod.
modlib_root="${MODLIB_ROOT:-/srv/modlib}"
modlib_env="$modlib_root/live/targets/${MODLIB_TARGET:-cpu}/env.sh"
if [ -r "$modlib_env" ]; then
    . "$modlib_env"
elif [ -d "$modlib_root/live/targets" ]; then
    echo "modlib: the library at $modlib_root has no target '${MODLIB_TARGET:-cpu}' (no $modlib_env);" \
         "its targets: $(ls "$modlib_root/live/targets" | tr '\n' ' ')- set MODLIB_TARGET to one of them" >&2
else
    echo "modlib: no module library is mounted at $modlib_root ($modlib_env is missing):" \
         "'module avail' shows none of its modules; mount the library volume there (read-only)" >&2
fi
unset modlib_root modlib_env
