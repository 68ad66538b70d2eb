import com.sun.tools.attach.VirtualMachine;
import java.util.Set;
import java.util.TreeMap;
import java.util.Map;
import javax.management.MBeanServerConnection;
import javax.management.ObjectName;
import javax.management.remote.JMXConnector;
import javax.management.remote.JMXConnectorFactory;
import javax.management.remote.JMXServiceURL;

/**
 * Request counts of a running Kafka broker, by request type, as one JSON line (bench/broker_cpu.py).
 *
 * Why the attach API: the broker of `deploy/stack` runs without remote JMX (nothing should listen on a
 * port it does not need); attaching to its pid starts the JVM's local management agent only when a
 * measurement asks for it. Reads `kafka.network:type=RequestMetrics,name=RequestsPerSec,request=*` (the
 * per-version meters summed per request type) and each type's `TotalTimeMs` count/mean.
 * Run with the JDK's source launcher: `java bench/KafkaRequestCounts.java <pid>`.
 */
public class KafkaRequestCounts {
    public static void main(String[] args) throws Exception {
        VirtualMachine vm = VirtualMachine.attach(args[0]);
        String url = vm.startLocalManagementAgent();
        vm.detach();
        try (JMXConnector c = JMXConnectorFactory.connect(new JMXServiceURL(url))) {
            MBeanServerConnection s = c.getMBeanServerConnection();
            Map<String, Long> counts = new TreeMap<>();
            Set<ObjectName> names = s.queryNames(
                new ObjectName("kafka.network:type=RequestMetrics,name=RequestsPerSec,*"), null);
            for (ObjectName n : names) {
                String req = n.getKeyProperty("request");
                long v = ((Number) s.getAttribute(n, "Count")).longValue();
                counts.merge(req, v, Long::sum);
            }
            StringBuilder out = new StringBuilder("{");
            boolean first = true;
            for (Map.Entry<String, Long> e : counts.entrySet()) {
                if (!first) out.append(",");
                first = false;
                out.append('"').append(e.getKey()).append("\":").append(e.getValue());
            }
            out.append("}");
            System.out.println(out);
        }
    }
}
