/*
 * A complete native host of Braid's collector, in C: events are stored one file per key in a
 * folder (written to a temporary file, fsync'ed and renamed, so a stored event survives a
 * crash), and batches are POSTed to braid serve over plain HTTP/1.1.
 *
 *   braid_example DIR PORT WRITE_KEY EVENT...
 *
 * restores what DIR holds, tracks one event per EVENT name, flushes, and prints
 * "delivered=N pending=M". The tests run it with the server down, then up.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "braid_collector.h"

struct app {
  const char *dir;
  int port;
  char auth[256];
};

static int store(void *user, const char *key, const char *value) {
  const struct app *app = user;
  char path[4096], tmp[4096];
  snprintf(path, sizeof path, "%s/%s", app->dir, key);
  snprintf(tmp, sizeof tmp, "%s/.%s.tmp", app->dir, key);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return -1;
  size_t len = strlen(value);
  int ok = write(fd, value, len) == (ssize_t)len && fsync(fd) == 0;
  close(fd);
  if (!ok || rename(tmp, path) != 0) return -1;
  int dirfd = open(app->dir, O_RDONLY);
  if (dirfd >= 0) {
    fsync(dirfd);
    close(dirfd);
  }
  return 0;
}

static void remove_key(void *user, const char *key) {
  const struct app *app = user;
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", app->dir, key);
  unlink(path);
}

static int send_batch(void *user, const char *body, size_t len, double *retry_after_ms) {
  const struct app *app = user;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)app->port)};
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    close(fd);
    return 0; /* network error: the collector retries later */
  }
  char head[512];
  int n = snprintf(head, sizeof head,
                   "POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                   "Authorization: Basic %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                   app->port, app->auth, len);
  if (write(fd, head, (size_t)n) != n || write(fd, body, len) != (ssize_t)len) {
    close(fd);
    return 0;
  }
  char answer[8192];
  size_t got = 0;
  ssize_t r;
  while (got < sizeof answer - 1 && (r = read(fd, answer + got, sizeof answer - 1 - got)) > 0) got += (size_t)r;
  answer[got] = '\0';
  close(fd);
  int status = 0;
  if (sscanf(answer, "HTTP/1.%*d %d", &status) != 1) return 0;
  for (char *line = strstr(answer, "\r\n"); line && line[2] != '\r'; line = strstr(line + 2, "\r\n")) {
    if (strncasecmp(line + 2, "retry-after:", 12) == 0) *retry_after_ms = atof(line + 14) * 1000.0;
  }
  return status;
}

static void base64(const char *in, char *out) {
  static const char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t len = strlen(in), o = 0;
  for (size_t i = 0; i < len; i += 3) {
    unsigned v = (unsigned char)in[i] << 16;
    if (i + 1 < len) v |= (unsigned char)in[i + 1] << 8;
    if (i + 2 < len) v |= (unsigned char)in[i + 2];
    out[o++] = table[(v >> 18) & 63];
    out[o++] = table[(v >> 12) & 63];
    out[o++] = i + 1 < len ? table[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < len ? table[v & 63] : '=';
  }
  out[o] = '\0';
}

static double now_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (double)tv.tv_sec * 1000.0 + (double)tv.tv_usec / 1000.0;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s DIR PORT WRITE_KEY EVENT...\n", argv[0]);
    return 2;
  }
  struct app app = {.dir = argv[1], .port = atoi(argv[2])};
  char credentials[128];
  snprintf(credentials, sizeof credentials, "%s:", argv[3]);
  base64(credentials, app.auth);
  mkdir(app.dir, 0700);

  uint32_t seed[4];
  int random = open("/dev/urandom", O_RDONLY);
  if (random < 0 || read(random, seed, sizeof seed) != (ssize_t)sizeof seed) return 1;
  close(random);
  braid_host host = {.user = &app, .store = store, .remove = remove_key, .send = send_batch};
  braid_collector *collector = braid_collector_new(&host, seed, 0);
  if (!collector) return 1;

  /* Give back everything stored by earlier runs. */
  DIR *dir = opendir(app.dir);
  struct dirent *entry;
  while (dir && (entry = readdir(dir)) != NULL) {
    if (entry->d_name[0] == '.') continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", app.dir, entry->d_name);
    FILE *file = fopen(path, "rb");
    if (!file) continue;
    char value[40000];
    size_t len = fread(value, 1, sizeof value - 1, file);
    fclose(file);
    value[len] = '\0';
    braid_collector_restore(collector, entry->d_name, value);
  }
  if (dir) closedir(dir);

  braid_collector_identify(collector, "native-user-1");
  const char *context = "{\"library\":{\"name\":\"braid-c-example\",\"version\":\"1\"},\"os\":{\"name\":\"Linux\"}}";
  for (int i = 4; i < argc; i++) {
    char body[512];
    snprintf(body, sizeof body, "{\"type\":\"track\",\"event\":\"%s\",\"properties\":{\"run\":%d}}", argv[i], i - 3);
    int code = braid_collector_track_json(collector, body, context, now_ms());
    if (code != BRAID_OK) {
      fprintf(stderr, "track failed: %d\n", code);
      return 1;
    }
  }
  if (braid_collector_track_json(collector, "{\"type\":\"track\",", NULL, now_ms()) != BRAID_INVALID_JSON) {
    fprintf(stderr, "invalid JSON was accepted\n");
    return 1;
  }
  int delivered = braid_collector_flush(collector, now_ms(), true);
  printf("delivered=%d pending=%zu\n", delivered, braid_collector_pending(collector));
  braid_collector_free(collector);
  return 0;
}
