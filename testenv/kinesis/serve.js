// Starts kinesalite in memory (memdown: no LevelDB, no native build) on
// 127.0.0.1 and prints "listening PORT" once it accepts connections. Port 0
// (the default) lets the kernel pick a free one. Streams become ACTIVE at
// once (no CREATING/UPDATING delay), so tests need not wait for them.
//
//   node serve.js [PORT] [--exit-with-stdin]
//
// It exits on SIGTERM or SIGINT; with --exit-with-stdin also when its
// standard input closes, so a parent that dies (even SIGKILLed) takes it
// down with it.
'use strict'
var kinesalite = require('kinesalite')

var port = Number(process.argv[2] || 0)
var server = kinesalite({createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 1000})
server.on('error', function(err) {
  console.error('kinesalite: ' + err.message)
  process.exit(1)
})
server.listen(port, '127.0.0.1', function() {
  console.log('listening ' + server.address().port)
})
process.on('SIGTERM', function() { process.exit(0) })
process.on('SIGINT', function() { process.exit(0) })
if (process.argv.indexOf('--exit-with-stdin') > 0) {
  process.stdin.on('end', function() { process.exit(0) })
  process.stdin.on('error', function() { process.exit(0) })
  process.stdin.resume()
}
