#!/bin/sh
# cert-retriever, as the Debian package installs it: the program in /usr/lib/cert-retriever, run
# by the packaged Node. postinst made a start-up snapshot of it for that Node (snapshot.blob, with
# snapshot.node saying which Node binary made it); the snapshot starts faster. It is used only
# when it is there, was made by the Node binary installed now, and no NODE_OPTIONS could change
# V8's flags; else the plain file runs. Nothing about the snapshot ever fails a run.
lib=/usr/lib/cert-retriever
if [ -z "${NODE_OPTIONS-}" ] && [ -r "$lib/snapshot.blob" ] && read -r made 2>/dev/null <"$lib/snapshot.node" &&
  [ "$made" = "$(stat -L -c '%d %i %s %Y' /usr/bin/node 2>/dev/null)" ]; then
  exec /usr/bin/node --snapshot-blob "$lib/snapshot.blob" -- "$@"
fi
exec /usr/bin/node "$lib/cert-retriever.mjs" "$@"
