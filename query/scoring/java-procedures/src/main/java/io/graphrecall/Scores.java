package io.graphrecall;

import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayDeque;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Properties;
import java.util.Spliterator;
import java.util.Spliterators;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;

import org.neo4j.graphdb.Node;
import org.neo4j.graphdb.Relationship;
import org.neo4j.graphdb.RelationshipType;
import org.neo4j.graphdb.ResourceIterator;
import org.neo4j.graphdb.Transaction;
import org.neo4j.logging.Log;
import org.neo4j.procedure.Context;
import org.neo4j.procedure.Description;
import org.neo4j.procedure.Mode;
import org.neo4j.procedure.Name;
import org.neo4j.procedure.Procedure;
import org.neo4j.procedure.TerminationGuard;
import org.neo4j.procedure.UserFunction;

/**
 * Swing and ItemCF cosine on the capped BASIS graph, in memory inside the database.
 *
 * <p>The same definitions, tie rules and output as the Cypher in query/scores.py (the readable
 * reference, which Browser can still use to explain a pair):
 * <ul>
 *   <li>SWING: s(i,j) = sum over user pairs {u,v} who both have i and j of
 *       w_u w_v / (alpha + |I_u ∩ I_v|), with w_u w_v = 1/sqrt(deg_u deg_v) (or 1).</li>
 *   <li>COOC: C_ij / sqrt(N_i N_j), each user adding 1 (or 1/log(1 + deg_u) with iuf).</li>
 *   <li>Rows keep score > minScore, ordered by score (at 12 decimals) descending then item id ascending, the top k,
 *       with norm = score / best and rank from 1.</li>
 * </ul>
 *
 * <p>The procedure only reads. It streams rows (item, other, score, norm, rank) one chunk of items
 * at a time, so that the caller writes them in batches:
 * <pre>
 * CALL graphrecall.scores('SWING', {k: 50}) YIELD item, other, score, norm, rank
 * CALL (item, other, score, norm, rank) {
 *   CREATE (item)-[:SWING {score: score, norm: norm, rank: rank}]->(other)
 * } IN TRANSACTIONS OF 10000 ROWS
 * </pre>
 *
 * <p>Swing is computed item by item: for item i, each pair of its users is intersected with a stamp
 * array (cost |I_v| per pair), so memory stays O(items + basis edges) per worker thread. A user
 * pair shared by several items is intersected once per shared item; the caps bound that work.
 */
public class Scores {

    private static final RelationshipType BASIS = RelationshipType.withName("BASIS");
    private static final int CHUNK = 256;
    private static final Map<String, long[]> PROGRESS = new LinkedHashMap<>() {
        @Override
        protected boolean removeEldestEntry(Map.Entry<String, long[]> eldest) {
            return size() > 64;
        }
    };

    @Context
    public Transaction tx;

    @Context
    public Log log;

    @Context
    public TerminationGuard guard;

    public static final class Row {
        public Node item;
        public Node other;
        public double score;
        public double norm;
        public long rank;

        Row(Node item, Node other, double score, double norm, long rank) {
            this.item = item;
            this.other = other;
            this.score = score;
            this.norm = norm;
            this.rank = rank;
        }
    }

    @UserFunction("graphrecall.version")
    @Description("graphrecall.version() - the build of the graphrecall procedures (a hash of their sources)")
    public String version() {
        Properties p = new Properties();
        try (InputStream in = Scores.class.getResourceAsStream("/graphrecall-procedures.properties")) {
            if (in != null) {
                p.load(in);
            }
        } catch (IOException e) {
            return "unknown";
        }
        return p.getProperty("build", "unknown");
    }

    @UserFunction("graphrecall.progress")
    @Description("graphrecall.progress(job) - [items done, items to do, work units, ms] of a graphrecall.scores "
            + "call with that job name, or null; work units: user pairs intersected (SWING), (item, user) visits (COOC)")
    public List<Long> progress(@Name("job") String job) {
        long[] p;
        synchronized (PROGRESS) {
            p = PROGRESS.get(job);
        }
        return p == null ? null : List.of(p[0], p[1], p[2], p[3]);
    }

    @Procedure(name = "graphrecall.scores", mode = Mode.READ)
    @Description("graphrecall.scores(kind, config) - 'SWING' or 'COOC' top-k per item on the BASIS graph, as rows "
            + "(item, other, score, norm, rank) to write. config: alpha (1.0), userWeight (true), iuf (false), "
            + "k (50), minScore (0.0), items (ids of the rows to compute; all when absent), concurrency (1), "
            + "chunk (items per worker between writes, 256), job")
    public Stream<Row> scores(@Name("kind") String kind,
                              @Name(value = "config", defaultValue = "{}") Map<String, Object> config) {
        final boolean swing;
        if ("SWING".equals(kind)) {
            swing = true;
        } else if ("COOC".equals(kind)) {
            swing = false;
        } else {
            throw new IllegalArgumentException("kind must be 'SWING' or 'COOC', got '" + kind + "'");
        }
        final double alpha = number(config, "alpha", 1.0);
        final int k = (int) number(config, "k", 50);
        final double minScore = number(config, "minScore", 0.0);
        final int concurrency = (int) number(config, "concurrency", 1);
        final int chunk = (int) number(config, "chunk", CHUNK);
        final boolean userWeight = flag(config, "userWeight", true);
        final boolean iuf = flag(config, "iuf", false);
        final String job = config.get("job") == null ? null : config.get("job").toString();
        if (alpha < 0) {
            throw new IllegalArgumentException("alpha must be >= 0, got " + alpha);
        }
        if (k < 1) {
            throw new IllegalArgumentException("k must be >= 1, got " + k);
        }
        if (minScore < 0) {
            throw new IllegalArgumentException("minScore must be >= 0, got " + minScore);
        }
        if (concurrency < 1) {
            throw new IllegalArgumentException("concurrency must be >= 1, got " + concurrency);
        }
        if (chunk < 1) {
            throw new IllegalArgumentException("chunk must be >= 1, got " + chunk);
        }
        final long t0 = System.nanoTime();
        final Basis b = Basis.load(tx);
        final int[] rows = b.rows(config.get("items"));
        final long[] prog = {0, rows.length, 0, 0};
        if (job != null) {
            synchronized (PROGRESS) {
                PROGRESS.put(job, prog);
            }
        }
        log.info("graphrecall.scores %s: basis of %d users, %d items, %d edges loaded in %d ms; %d rows to compute",
                kind, b.nUsers, b.nItems, b.uItems.length, (System.nanoTime() - t0) / 1_000_000, rows.length);
        final Worker[] workers = new Worker[Math.min(concurrency, Math.max(1, rows.length / chunk))];
        for (int w = 0; w < workers.length; w++) {
            workers[w] = new Worker(b, k, minScore, alpha, userWeight, iuf);
        }
        final ExecutorService pool = workers.length > 1 ? Executors.newFixedThreadPool(workers.length) : null;

        Iterator<Row> it = new Iterator<>() {
            private final ArrayDeque<Row> buffer = new ArrayDeque<>();
            private int next = 0;
            private final Node[] nodes = new Node[b.nItems];

            private Node node(int i) {
                Node n = nodes[i];
                if (n == null) {
                    n = tx.getNodeById(b.itemNode[i]);
                    nodes[i] = n;
                }
                return n;
            }

            private void fill() {
                while (buffer.isEmpty() && next < rows.length) {
                    guard.check();
                    final int start = next;
                    final int end = Math.min(rows.length, start + chunk * workers.length);
                    next = end;
                    final int[][] tops = new int[end - start][];
                    final double[][] scores = new double[end - start][];
                    if (pool == null) {
                        workers[0].run(rows, start, end, swing, tops, scores, start);
                    } else {
                        int per = (end - start + workers.length - 1) / workers.length;
                        Future<?>[] fs = new Future<?>[workers.length];
                        for (int w = 0; w < workers.length; w++) {
                            final Worker wk = workers[w];
                            final int s = Math.min(end, start + w * per);
                            final int e = Math.min(end, s + per);
                            fs[w] = pool.submit(() -> wk.run(rows, s, e, swing, tops, scores, start));
                        }
                        for (Future<?> f : fs) {
                            try {
                                f.get();
                            } catch (Exception ex) {
                                throw new RuntimeException("graphrecall.scores worker failed: " + ex, ex);
                            }
                        }
                    }
                    for (int r = 0; r < tops.length; r++) {
                        int[] js = tops[r];
                        if (js.length == 0) {
                            continue;
                        }
                        double[] ss = scores[r];
                        Node item = node(rows[start + r]);
                        for (int q = 0; q < js.length; q++) {
                            buffer.add(new Row(item, node(js[q]), ss[q], ss[q] / ss[0], q + 1));
                        }
                    }
                    long pairs = 0;
                    for (Worker w : workers) {
                        pairs += w.pairs;
                    }
                    prog[0] = end;
                    prog[2] = pairs;
                    prog[3] = (System.nanoTime() - t0) / 1_000_000;
                }
                if (buffer.isEmpty() && pool != null) {
                    pool.shutdown();
                }
            }

            @Override
            public boolean hasNext() {
                fill();
                return !buffer.isEmpty();
            }

            @Override
            public Row next() {
                fill();
                if (buffer.isEmpty()) {
                    throw new NoSuchElementException();
                }
                return buffer.poll();
            }
        };
        return StreamSupport.stream(Spliterators.spliteratorUnknownSize(it, Spliterator.ORDERED), false)
                .onClose(() -> {
                    if (pool != null) {
                        pool.shutdownNow();
                    }
                });
    }

    private static double number(Map<String, Object> config, String key, double dflt) {
        Object v = config.get(key);
        if (v == null) {
            return dflt;
        }
        if (!(v instanceof Number)) {
            throw new IllegalArgumentException(key + " must be a number, got " + v);
        }
        return ((Number) v).doubleValue();
    }

    private static boolean flag(Map<String, Object> config, String key, boolean dflt) {
        Object v = config.get(key);
        if (v == null) {
            return dflt;
        }
        if (!(v instanceof Boolean)) {
            throw new IllegalArgumentException(key + " must be true or false, got " + v);
        }
        return (Boolean) v;
    }

    /** The BASIS graph as two CSR arrays over dense user and item indices. */
    static final class Basis {
        int nUsers;
        int nItems;
        long[] itemNode; // internal node id of each item
        String[] itemId;
        int[] idRank; // position of each item in id order, for ties
        int[] uStart; // user -> items (ascending index)
        int[] uItems;
        int[] iStart; // item -> users (ascending index)
        int[] iUsers;
        int maxItemsPerUser;

        @SuppressWarnings("deprecation")
        static Basis load(Transaction tx) {
            long[] src = new long[1 << 16];
            long[] dst = new long[1 << 16];
            int m = 0;
            try (ResourceIterator<Relationship> rels = tx.findRelationships(BASIS)) {
                while (rels.hasNext()) {
                    Relationship r = rels.next();
                    if (m == src.length) {
                        src = Arrays.copyOf(src, 2 * m);
                        dst = Arrays.copyOf(dst, 2 * m);
                    }
                    src[m] = r.getStartNode().getId();
                    dst[m] = r.getEndNode().getId();
                    m++;
                }
            }
            Basis b = new Basis();
            long[] users = unique(src, m);
            b.itemNode = unique(dst, m);
            b.nUsers = users.length;
            b.nItems = b.itemNode.length;
            int[] ui = new int[m];
            int[] ii = new int[m];
            for (int e = 0; e < m; e++) {
                ui[e] = Arrays.binarySearch(users, src[e]);
                ii[e] = Arrays.binarySearch(b.itemNode, dst[e]);
            }
            b.uStart = new int[b.nUsers + 1];
            b.uItems = csr(ui, ii, b.nUsers, b.uStart);
            b.iStart = new int[b.nItems + 1];
            b.iUsers = csr(ii, ui, b.nItems, b.iStart);
            for (int u = 0; u < b.nUsers; u++) {
                b.maxItemsPerUser = Math.max(b.maxItemsPerUser, b.uStart[u + 1] - b.uStart[u]);
            }
            b.itemId = new String[b.nItems];
            for (int i = 0; i < b.nItems; i++) {
                Object id = tx.getNodeById(b.itemNode[i]).getProperty("id", null);
                b.itemId[i] = id == null ? "" : id.toString();
            }
            Integer[] order = new Integer[b.nItems];
            for (int i = 0; i < b.nItems; i++) {
                order[i] = i;
            }
            Arrays.sort(order, (x, y) -> b.itemId[x].compareTo(b.itemId[y]));
            b.idRank = new int[b.nItems];
            for (int r = 0; r < b.nItems; r++) {
                b.idRank[order[r]] = r;
            }
            return b;
        }

        private static long[] unique(long[] a, int m) {
            long[] s = Arrays.copyOf(a, m);
            Arrays.sort(s);
            int n = 0;
            for (int e = 0; e < m; e++) {
                if (n == 0 || s[n - 1] != s[e]) {
                    s[n++] = s[e];
                }
            }
            return Arrays.copyOf(s, n);
        }

        /** Rows grouped by {@code key}, each group's {@code val} ascending. */
        private static int[] csr(int[] key, int[] val, int n, int[] start) {
            for (int k : key) {
                start[k + 1]++;
            }
            for (int x = 0; x < n; x++) {
                start[x + 1] += start[x];
            }
            int[] pos = Arrays.copyOf(start, n);
            int[] out = new int[key.length];
            for (int e = 0; e < key.length; e++) {
                out[pos[key[e]]++] = val[e];
            }
            for (int x = 0; x < n; x++) {
                Arrays.sort(out, start[x], start[x + 1]);
            }
            return out;
        }

        int deg(int[] start, int x) {
            return start[x + 1] - start[x];
        }

        /** Item indices of the rows to compute: every item, or those of {@code items} in the basis. */
        int[] rows(Object items) {
            if (items == null) {
                int[] all = new int[nItems];
                for (int i = 0; i < nItems; i++) {
                    all[i] = i;
                }
                return all;
            }
            if (!(items instanceof List)) {
                throw new IllegalArgumentException("items must be a list of item ids, got " + items);
            }
            Map<String, Integer> index = new HashMap<>(2 * nItems);
            for (int i = 0; i < nItems; i++) {
                index.put(itemId[i], i);
            }
            return ((List<?>) items).stream().map(x -> index.get(String.valueOf(x)))
                    .filter(x -> x != null).mapToInt(Integer::intValue).distinct().toArray();
        }
    }

    /**
     * The ranking key: the score rounded to 12 decimals, as Cypher's round(score, 12) orders the rows. Sums
     * of the same terms in another order can differ in the last bit; rounded, true ties stay ties and are
     * broken by id in both engines.
     */
    static double rounded(double score) {
        return Math.rint(score * 1e12) / 1e12;
    }

    /** Per-thread state: a stamp array for intersections, an accumulator and a top-k heap. */
    static final class Worker {
        final Basis b;
        final int k;
        final double minScore;
        final double alpha;
        final boolean userWeight;
        final boolean iuf;
        final int[] stamp;
        final int[] seen;
        final double[] acc;
        final double[] key;
        final int[] touched;
        final int[] buf;
        final int[] heap;
        int token = 0;
        long pairs = 0;

        Worker(Basis b, int k, double minScore, double alpha, boolean userWeight, boolean iuf) {
            this.b = b;
            this.k = k;
            this.minScore = minScore;
            this.alpha = alpha;
            this.userWeight = userWeight;
            this.iuf = iuf;
            stamp = new int[b.nItems];
            seen = new int[b.nItems];
            acc = new double[b.nItems];
            key = new double[b.nItems];
            touched = new int[b.nItems];
            buf = new int[b.maxItemsPerUser + 1];
            heap = new int[k];
        }

        void run(int[] rows, int s, int e, boolean swing, int[][] tops, double[][] scores, int base) {
            for (int r = s; r < e; r++) {
                int n = swing ? swing(rows[r]) : cooc(rows[r]);
                int[] js = new int[n];
                double[] ss = new double[n];
                for (int q = 0; q < n; q++) {
                    js[q] = heap[q];
                    ss[q] = acc[heap[q]];
                }
                tops[r - base] = js;
                scores[r - base] = ss;
            }
        }

        private int touch(int i, int nTouched, int j, double add) {
            if (seen[j] != i + 1) {
                seen[j] = i + 1;
                acc[j] = 0.0;
                touched[nTouched++] = j;
            }
            acc[j] += add;
            return nTouched;
        }

        int swing(int i) {
            int nTouched = 0;
            int s = b.iStart[i];
            int e = b.iStart[i + 1];
            for (int a = s; a < e - 1; a++) {
                int u = b.iUsers[a];
                if (++token == Integer.MAX_VALUE) {
                    Arrays.fill(stamp, 0);
                    token = 1;
                }
                for (int p = b.uStart[u]; p < b.uStart[u + 1]; p++) {
                    stamp[b.uItems[p]] = token;
                }
                int du = b.deg(b.uStart, u);
                for (int c = a + 1; c < e; c++) {
                    int v = b.iUsers[c];
                    int cnt = 0;
                    for (int p = b.uStart[v]; p < b.uStart[v + 1]; p++) {
                        int j = b.uItems[p];
                        if (stamp[j] == token) {
                            buf[cnt++] = j;
                        }
                    }
                    pairs++;
                    if (cnt < 2) {
                        continue;
                    }
                    // as Q_SWING_PAIRS: (1 / sqrt(deg_u * deg_v)) / (alpha + |common|)
                    double w = userWeight ? 1.0 / Math.sqrt((double) du * b.deg(b.uStart, v)) : 1.0;
                    double add = w / (alpha + cnt);
                    for (int t = 0; t < cnt; t++) {
                        if (buf[t] != i) {
                            nTouched = touch(i, nTouched, buf[t], add);
                        }
                    }
                }
            }
            return top(nTouched);
        }

        int cooc(int i) {
            int nTouched = 0;
            for (int a = b.iStart[i]; a < b.iStart[i + 1]; a++) {
                int u = b.iUsers[a];
                double w = iuf ? 1.0 / Math.log(1.0 + b.deg(b.uStart, u)) : 1.0;
                for (int p = b.uStart[u]; p < b.uStart[u + 1]; p++) {
                    int j = b.uItems[p];
                    if (j != i) {
                        nTouched = touch(i, nTouched, j, w);
                    }
                }
                pairs++;
            }
            double di = b.deg(b.iStart, i);
            for (int t = 0; t < nTouched; t++) {
                int j = touched[t];
                acc[j] = acc[j] / Math.sqrt(di * b.deg(b.iStart, j));
            }
            return top(nTouched);
        }

        /** true when x ranks below y: a lower score at 12 decimals, or the same and a later id. */
        private boolean worse(int x, int y) {
            return key[x] < key[y] || (key[x] == key[y] && b.idRank[x] > b.idRank[y]);
        }

        /** The top k of the touched items with score > minScore into heap[0..n), best first. */
        private int top(int nTouched) {
            int n = 0;
            for (int t = 0; t < nTouched; t++) {
                int j = touched[t];
                if (!(acc[j] > minScore)) {
                    continue;
                }
                key[j] = rounded(acc[j]);
                if (n < k) {
                    heap[n] = j;
                    siftUp(n++);
                } else if (worse(heap[0], j)) {
                    heap[0] = j;
                    siftDown(0, n);
                }
            }
            // heap sort: repeatedly move the worst to the end, leaving heap[0..n) best first
            for (int end = n - 1; end > 0; end--) {
                int x = heap[0];
                heap[0] = heap[end];
                heap[end] = x;
                siftDown(0, end);
            }
            return n;
        }

        private void siftUp(int c) {
            while (c > 0) {
                int p = (c - 1) / 2;
                if (!worse(heap[c], heap[p])) {
                    return;
                }
                int x = heap[c];
                heap[c] = heap[p];
                heap[p] = x;
                c = p;
            }
        }

        private void siftDown(int p, int n) {
            while (true) {
                int l = 2 * p + 1;
                if (l >= n) {
                    return;
                }
                int c = (l + 1 < n && worse(heap[l + 1], heap[l])) ? l + 1 : l;
                if (!worse(heap[c], heap[p])) {
                    return;
                }
                int x = heap[c];
                heap[c] = heap[p];
                heap[p] = x;
                p = c;
            }
        }
    }
}
