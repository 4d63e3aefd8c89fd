// CaffeinePeer: measures Caffeine under the conditions of stampede's hit-path benchmarks and prints
// Google Benchmark-shaped JSON for benchmarks/report.py.
//
// Built and run by scripts/bench.sh --peers against Debian's libcaffeine-java (no Maven):
//
//   javac -d OUT -cp /usr/share/java/caffeine.jar benchmarks/peers/java/CaffeinePeer.java
//   java -Xms2g -Xmx2g -cp OUT:/usr/share/java/caffeine.jar CaffeinePeer \
//       --profile quick --spread-keys 100000 --out bench-out/peers-java.json
//
// Cases (the same keys and values as benchmarks/bm_hit_path.cpp; the cache is built with
// expireAfterWrite(24 h) as stampede's Cache there has a 24 h TTL, so a hit checks an expiry too):
//   BM_Peer_Caffeine_HotHit/threads:T     cache.get("hot-key", loader) on a 12-byte String value by
//                                         T threads; items_per_second over all threads.
//   BM_Peer_Caffeine_SpreadHit/threads:1  keys "key:<i>" drawn with the same xorshift sequence from
//                                         --spread-keys warm keys.
//   BM_Peer_Caffeine_BytesPerEntry/keys:K heap growth of K puts of fresh "key:<i>" -> 16-byte
//                                         String, over K. Heap used (MemoryMXBean) is read after
//                                         System.gc(); keys and values are referenced only by the
//                                         cache, so both are counted, as stampede's Cache owns its
//                                         copies. Limits: System.gc() is a request (a full
//                                         collection with the default G1 unless
//                                         -XX:+DisableExplicitGC), "used" is heap only (no
//                                         metaspace, no JIT code), and references are 4 bytes
//                                         under compressed oops (heaps < 32 GiB), 8 without.
// A throughput case warms up, then counts operations over a fixed window; each worker publishes
// its count every 256 operations. Every window is bounded by the profile.

import com.github.benmanes.caffeine.cache.Cache;
import com.github.benmanes.caffeine.cache.Caffeine;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.lang.ref.Reference;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;

public final class CaffeinePeer {
  /** Bounds of a run; the names match stampede_bench's --stampede_profile. */
  record Profile(long warmupMs, long windowMs, int repetitions, int memoryKeys) {}

  static final Map<String, Profile> PROFILES =
      Map.of(
          "smoke", new Profile(10, 20, 1, 10_000),
          "quick", new Profile(300, 500, 1, 1_000_000),
          "full", new Profile(1000, 2000, 3, 1_000_000));

  /** One worker's operation count, alone on its cache line. */
  static final class Counter {
    long p0, p1, p2, p3, p4, p5, p6;
    volatile long n;
    long q0, q1, q2, q3, q4, q5, q6;
  }

  static volatile boolean stop;
  static volatile long sink;

  /** "v-<i>" padded with '.' to size characters, as make_value in bm_hit_path.cpp. */
  static String value(int i, int size) {
    StringBuilder s = new StringBuilder("v-").append(i % 1_000_000_000);
    while (s.length() < size) s.append('.');
    s.setLength(size);
    return s.toString();
  }

  static Cache<String, String> newCache() {
    return Caffeine.newBuilder().expireAfterWrite(24, TimeUnit.HOURS).build();
  }

  /** {ops per second, ops, seconds} of `threads` workers reading hot (keys == null) or keys. */
  static double[] hitRate(Cache<String, String> cache, String hot, String[] keys, int threads, Profile p)
      throws InterruptedException {
    stop = false;
    Counter[] counts = new Counter[threads];
    Thread[] workers = new Thread[threads];
    Function<String, String> loader = k -> "";
    for (int t = 0; t < threads; t++) {
      final Counter c = counts[t] = new Counter();
      final long seed = 0x9E3779B97F4A7C15L * (t + 1);
      workers[t] =
          new Thread(
              () -> {
                long x = seed;
                long done = 0;
                long acc = 0;
                while (!stop) {
                  for (int i = 0; i < 256; i++) {
                    String k = hot;
                    if (keys != null) {
                      x ^= x << 13;
                      x ^= x >>> 7;
                      x ^= x << 17;
                      k = keys[(int) Long.remainderUnsigned(x, keys.length)];
                    }
                    acc += cache.get(k, loader).length();
                  }
                  done += 256;
                  c.n = done;
                }
                sink += acc;
              });
      workers[t].start();
    }
    Thread.sleep(p.warmupMs());
    long c0 = total(counts);
    long t0 = System.nanoTime();
    Thread.sleep(p.windowMs());
    long c1 = total(counts);
    double secs = (System.nanoTime() - t0) / 1e9;
    stop = true;
    for (Thread w : workers) w.join();
    return new double[] {(c1 - c0) / secs, c1 - c0, secs};
  }

  static long total(Counter[] counts) {
    long s = 0;
    for (Counter c : counts) s += c.n;
    return s;
  }

  static Map<String, Object> result(String name, int threads, long iterations, double secs) {
    Map<String, Object> r = new LinkedHashMap<>();
    r.put("name", name);
    r.put("run_name", name);
    r.put("run_type", "iteration");
    r.put("repetitions", 1);
    r.put("repetition_index", 0);
    r.put("threads", threads);
    r.put("iterations", iterations);
    if (iterations > 0) {
      r.put("real_time", secs * 1e9 / iterations);
      r.put("cpu_time", secs * 1e9 / iterations);
    }
    r.put("time_unit", "ns");
    return r;
  }

  static Map<String, Object> hitCase(
      String name, Cache<String, String> cache, String hot, String[] keys, int threads, Profile p)
      throws InterruptedException {
    double[] rates = new double[p.repetitions()];
    double[] last = null;
    for (int i = 0; i < rates.length; i++) {
      last = hitRate(cache, hot, keys, threads, p);
      rates[i] = last[0];
    }
    Arrays.sort(rates);
    Map<String, Object> r = result(name + "/threads:" + threads, threads, (long) last[1], last[2]);
    r.put("repetitions", p.repetitions());
    r.put("items_per_second", rates[rates.length / 2]);
    r.put("keys", keys == null ? 1 : keys.length);
    return r;
  }

  static long usedHeapAfterGc() {
    for (int i = 0; i < 3; i++) System.gc();
    return ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed();
  }

  static Map<String, Object> bytesPerEntry(int n) {
    long before = usedHeapAfterGc();
    long t0 = System.nanoTime();
    Cache<String, String> cache = newCache();
    for (int i = 0; i < n; i++) cache.put("key:" + i, value(i, 16));
    double secs = (System.nanoTime() - t0) / 1e9;
    long after = usedHeapAfterGc();
    Reference.reachabilityFence(cache);
    Map<String, Object> r = result("BM_Peer_Caffeine_BytesPerEntry/keys:" + n, 1, 1, secs);
    r.put("bytes_per_entry", (double) (after - before) / n);
    r.put("keys", n);
    return r;
  }

  static String json(Object o) {
    if (o instanceof String s) {
      StringBuilder b = new StringBuilder("\"");
      for (char ch : s.toCharArray()) {
        if (ch == '"' || ch == '\\') b.append('\\').append(ch);
        else if (ch < 0x20) b.append(String.format(Locale.ROOT, "\\u%04x", (int) ch));
        else b.append(ch);
      }
      return b.append('"').toString();
    }
    if (o instanceof Double d) return Double.isFinite(d) ? String.format(Locale.ROOT, "%.6f", d) : "null";
    if (o instanceof Map<?, ?> m) {
      List<String> parts = new ArrayList<>();
      m.forEach((k, v) -> parts.add(json(k.toString()) + ": " + json(v)));
      return "{" + String.join(", ", parts) + "}";
    }
    if (o instanceof List<?> l) {
      List<String> parts = new ArrayList<>();
      for (Object v : l) parts.add("\n    " + json(v));
      return "[" + String.join(",", parts) + "\n  ]";
    }
    return String.valueOf(o);
  }

  static String caffeineJar() {
    try {
      Path jar = Paths.get(Caffeine.class.getProtectionDomain().getCodeSource().getLocation().toURI());
      return jar.toRealPath().getFileName().toString();
    } catch (Exception e) {
      return "unknown";
    }
  }

  public static void main(String[] args) throws Exception {
    String profileName = "quick";
    int spreadKeys = 1_000_000;
    String out = null;
    for (int i = 0; i + 1 < args.length; i += 2) {
      switch (args[i]) {
        case "--profile" -> profileName = args[i + 1];
        case "--spread-keys" -> spreadKeys = Integer.parseInt(args[i + 1]);
        case "--out" -> out = args[i + 1];
        default -> {
          System.err.println("CaffeinePeer: unknown argument " + args[i]);
          System.exit(2);
        }
      }
    }
    Profile p = PROFILES.get(profileName);
    if (p == null || spreadKeys < 1) {
      System.err.println("CaffeinePeer: unknown --profile " + profileName + " or --spread-keys < 1");
      System.exit(2);
    }

    List<Object> results = new ArrayList<>();
    Cache<String, String> hot = newCache();
    hot.put("hot-key", value(0, 12));
    for (int t : new int[] {1, 2}) results.add(hitCase("BM_Peer_Caffeine_HotHit", hot, "hot-key", null, t, p));
    Cache<String, String> spread = newCache();
    String[] keys = new String[spreadKeys];
    for (int i = 0; i < spreadKeys; i++) {
      keys[i] = "key:" + i;
      spread.put(keys[i], value(i, 12));
    }
    results.add(hitCase("BM_Peer_Caffeine_SpreadHit", spread, null, keys, 1, p));
    hot = spread = null;
    keys = null;
    results.add(bytesPerEntry(p.memoryKeys()));

    Map<String, Object> context = new LinkedHashMap<>();
    context.put("peer_java_version", System.getProperty("java.runtime.version"));
    context.put("peer_java_vm", System.getProperty("java.vm.name"));
    context.put(
        "peer_java_gc",
        String.join(
            ", ",
            ManagementFactory.getGarbageCollectorMXBeans().stream().map(b -> b.getName()).toList()));
    context.put("peer_caffeine_jar", caffeineJar());
    context.put("peer_java_max_heap_mib", Runtime.getRuntime().maxMemory() >> 20);
    context.put("peer_java_profile", profileName);
    context.put("peer_java_spread_keys", spreadKeys);
    String doc = "{\n  \"context\": " + json(context) + ",\n  \"benchmarks\": " + json(results) + "\n}\n";
    if (out == null) {
      System.out.print(doc);
    } else {
      Files.writeString(Path.of(out), doc, StandardCharsets.UTF_8);
    }
  }
}
