//! A small ONNX graph builder over the protobuf types tract-onnx exposes
//! (`tract_onnx::pb`), encoded with prost. Nodes get unique output names;
//! initializers are added once by name.

use std::collections::HashMap;

use prost::Message;
use tract_onnx::pb;

/// ONNX IR version written: ONNX Runtime 1.31 refuses IR 14; 8 is what
/// opset 17 needs and every runtime here reads.
pub const IR_VERSION: i64 = 8;
pub const OPSET: i64 = 17;

/// An attribute value.
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Str(String),
}

pub struct GraphBuilder {
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    /// Element type of each initializer, by name.
    initializer_types: HashMap<String, i32>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
    counter: usize,
}

/// A dimension of an input or output: fixed, or named (symbolic).
pub enum Dim {
    Fixed(i64),
    Named(String),
}

/// A node attribute named `name`.
pub fn attribute(name: &str, value: Attr) -> pb::AttributeProto {
    use pb::attribute_proto::AttributeType as T;
    let mut a = pb::AttributeProto {
        name: name.to_string(),
        ..Default::default()
    };
    match value {
        Attr::Int(i) => {
            a.i = i;
            a.r#type = T::Int as i32;
        }
        Attr::Ints(v) => {
            a.ints = v;
            a.r#type = T::Ints as i32;
        }
        Attr::Float(f) => {
            a.f = f;
            a.r#type = T::Float as i32;
        }
        Attr::Str(s) => {
            a.s = s.into_bytes();
            a.r#type = T::String as i32;
        }
    }
    a
}

/// The declaration of a graph input or output.
pub fn value_info(name: &str, elem_type: pb::tensor_proto::DataType, dims: &[Dim]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::dimension::Value;
    let dim = dims
        .iter()
        .map(|d| pb::tensor_shape_proto::Dimension {
            denotation: String::new(),
            value: Some(match d {
                Dim::Fixed(n) => Value::DimValue(*n),
                Dim::Named(s) => Value::DimParam(s.clone()),
            }),
        })
        .collect();
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem_type as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
        }),
        doc_string: String::new(),
    }
}

impl Default for GraphBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl GraphBuilder {
    pub fn new() -> GraphBuilder {
        GraphBuilder {
            nodes: Vec::new(),
            initializers: Vec::new(),
            initializer_types: HashMap::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            counter: 0,
        }
    }

    pub fn input(&mut self, name: &str, dims: &[Dim]) -> String {
        self.inputs
            .push(value_info(name, pb::tensor_proto::DataType::Float, dims));
        name.to_string()
    }

    /// An int64 graph input (indices).
    pub fn input_i64(&mut self, name: &str, dims: &[Dim]) -> String {
        self.inputs
            .push(value_info(name, pb::tensor_proto::DataType::Int64, dims));
        name.to_string()
    }

    /// Gives `value` a stable name with an Identity node (runtimes fuse it
    /// away) and returns that name.
    pub fn named(&mut self, value: &str, name: &str) -> String {
        self.identity(value, name, format!("name_{name}"));
        name.to_string()
    }

    fn identity(&mut self, value: &str, name: &str, node: String) {
        self.nodes.push(pb::NodeProto {
            input: vec![value.to_string()],
            output: vec![name.to_string()],
            name: node,
            op_type: "Identity".into(),
            ..Default::default()
        });
    }

    /// Declares `value` a graph output, renaming it with an Identity if needed.
    pub fn output(&mut self, value: &str, name: &str, dims: &[Dim]) {
        if value != name {
            self.identity(value, name, format!("output_{name}"));
        }
        self.outputs
            .push(value_info(name, pb::tensor_proto::DataType::Float, dims));
    }

    /// An f32 initializer (added once; later calls with the name reuse it).
    pub fn weight(&mut self, name: &str, dims: &[i64], values: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<i64>() as usize, values.len());
        self.initializer(name, dims, pb::tensor_proto::DataType::Float, || {
            values.iter().flat_map(|v| v.to_le_bytes()).collect()
        })
    }

    /// An f64 initializer (constants of the f64 parts of the graph).
    pub fn doubles(&mut self, name: &str, dims: &[i64], values: &[f64]) -> String {
        self.initializer(name, dims, pb::tensor_proto::DataType::Double, || {
            values.iter().flat_map(|v| v.to_le_bytes()).collect()
        })
    }

    /// An i64 constant initializer (shapes, axes, indices).
    pub fn ints(&mut self, name: &str, dims: &[i64], values: &[i64]) -> String {
        self.initializer(name, dims, pb::tensor_proto::DataType::Int64, || {
            values.iter().flat_map(|v| v.to_le_bytes()).collect()
        })
    }

    /// Adds an initializer the first time `name` is used. Names are one
    /// namespace across types, so reusing one for another type is a bug.
    fn initializer(
        &mut self,
        name: &str,
        dims: &[i64],
        data_type: pb::tensor_proto::DataType,
        raw: impl FnOnce() -> Vec<u8>,
    ) -> String {
        match self.initializer_types.get(name) {
            Some(&t) => debug_assert_eq!(t, data_type as i32, "initializer {name} reused with another type"),
            None => {
                self.initializer_types.insert(name.to_string(), data_type as i32);
                self.initializers.push(pb::TensorProto {
                    dims: dims.to_vec(),
                    data_type: data_type as i32,
                    name: name.to_string(),
                    raw_data: raw(),
                    ..Default::default()
                });
            }
        }
        name.to_string()
    }

    /// Adds a node with one output and returns the output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        self.node_n(op, inputs, attrs, 1).remove(0)
    }

    /// Adds a node with `n_out` outputs.
    pub fn node_n(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<(&str, Attr)>,
        n_out: usize,
    ) -> Vec<String> {
        self.counter += 1;
        let name = format!("{}_{}", op.to_lowercase(), self.counter);
        let outputs: Vec<String> = (0..n_out).map(|i| format!("{name}_out{i}")).collect();
        let attribute = attrs.into_iter().map(|(k, v)| attribute(k, v)).collect();
        self.nodes.push(pb::NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.clone(),
            name,
            op_type: op.to_string(),
            attribute,
            ..Default::default()
        });
        outputs
    }

    /// The finished model, serialised.
    pub fn encode(self, graph_name: &str, metadata: &[(String, String)]) -> Vec<u8> {
        let model = pb::ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "lgss".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(pb::GraphProto {
                node: self.nodes,
                name: graph_name.to_string(),
                initializer: self.initializers,
                input: self.inputs,
                output: self.outputs,
                ..Default::default()
            }),
            metadata_props: metadata
                .iter()
                .map(|(k, v)| pb::StringStringEntryProto {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            ..Default::default()
        };
        model.encode_to_vec()
    }
}
