#ifndef OPENELM_SERVER_HTTP_PEER_PROBE_H_
#define OPENELM_SERVER_HTTP_PEER_PROBE_H_

namespace openelm::server::http_front {

// What a connected stream socket's peer has done, as far as can be told
// without reading anything and without waiting.
enum class PeerState {
  kQuiet,         // nothing to read now: the peer is still there
  kBytesWaiting,  // bytes wait unread (a pipelined request, TLS records)
  kGone,          // the peer closed its side or reset the connection
};

// Never blocks. A reactor's "readable" wake-up can be stale (the bytes that
// caused it were read by the time its handler runs), so a connection that
// checks its peer on such a wake-up must get kQuiet then, not a wait.
PeerState ProbePeer(int fd);

}  // namespace openelm::server::http_front

#endif  // OPENELM_SERVER_HTTP_PEER_PROBE_H_
