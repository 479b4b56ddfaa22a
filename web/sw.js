/* sw.js — the chat page's service worker: the page's own files kept for use without a network.
 *
 * Its cache is named by the build (@BUILD@ is replaced by cmake/embed.cmake with a hash of every
 * embedded file), so a new server's files make a new worker. The new worker fills its cache and
 * waits: the page offers "reload to update" and tells it to take over (never old and new files
 * mixed in one page); once active it deletes the older caches. The page's files are answered
 * from the cache (the network when missing); nothing else is touched: API answers, a user's
 * data and shared conversations always come from the server, never from a cache. */
"use strict";

const BUILD = "@BUILD@";
const CACHE = `whale-${BUILD}`;
/* the files the page needs to open; KaTeX and highlight.js load on first use and are kept then */
const SHELL = ["/", "/app.js", "/app.css", "/render.js", "/icon.svg", "/manifest.webmanifest", "/icon-192.png",
  "/icon-512.png", "/icon-maskable-512.png", "/vendor/markdown-it.js", "/vendor/purify.js"];
const FILE = /^\/(?:$|index\.html$|[\w-]+\.(?:js|css|svg|png|webmanifest)$|vendor\/[\w.-]+$)/;

self.addEventListener("install", (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL.map((u) => new Request(u, { cache: "reload" })))));
});

self.addEventListener("activate", (e) => {
  e.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k.startsWith("whale-") && k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener("message", (e) => {
  if (e.data && e.data.type === "update") self.skipWaiting(); /* the page asked: take over now */
});

self.addEventListener("fetch", (e) => {
  const r = e.request;
  const url = new URL(r.url);
  if (r.method !== "GET" || url.origin !== self.location.origin || url.pathname === "/sw.js") return;
  if (!FILE.test(url.pathname)) return; /* the API, /shared/, /web/config, /metrics: the network's */
  const page = url.pathname === "/" || url.pathname === "/index.html"; /* (its #routes never reach here) */
  e.respondWith(caches.open(CACHE).then(async (c) => {
    const hit = await c.match(page ? "/" : url.pathname);
    if (hit) return hit;
    const got = await fetch(r);
    if (got.ok) c.put(url.pathname, got.clone()); /* a library loaded on first use */
    return got;
  }));
});
