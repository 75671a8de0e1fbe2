# Installed as /etc/profile.d/venv.sh, @VENV@ replaced by the image's venv (install.sh): Debian's
# /etc/profile resets PATH, and JupyterLab's terminals are login shells, so this puts the venv back.
case ":$PATH:" in *":@VENV@/bin:"*) ;; *) PATH="@VENV@/bin:$PATH" ;; esac
