// S8 baseline: a plain Node socket.io server. POST /broadcast emits the body as `message:new`
// to every connected socket, the same broadcast Atende does for an inbound webhook.
"use strict";
const http = require("http");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 0);
const server = http.createServer((req, res) => {
  if (req.method === "POST" && req.url === "/broadcast") {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch (e) {
        res.writeHead(400).end("bad json");
        return;
      }
      io.emit("message:new", body);
      res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
    });
    return;
  }
  if (req.url === "/health") {
    res.writeHead(200).end("ok");
    return;
  }
  res.writeHead(404).end();
});
const io = new Server(server, { serveClient: false, perMessageDeflate: false });
io.use((socket, next) => (socket.handshake.auth && socket.handshake.auth.token ? next() : next(new Error("no token"))));
io.on("connection", (socket) => {
  socket.emit("connected", { message: "Connected", user_id: socket.id });
});
server.listen(port, "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
